"""Seeded Faker instances, one per locale, shared by the text generators."""

from __future__ import annotations

from collections.abc import Sequence

from faker import Faker


def _stable(fake: Faker) -> Faker:
    """Sort word lists that Faker builds from a set (it_IT ``cities``), whose order, and so
    whose seeded draws, would otherwise change with each process's string hash seed."""
    for provider in fake.providers:
        cities = getattr(type(provider), "cities", None)
        if isinstance(cities, list):
            provider.cities = sorted(cities)
    return fake


def seeded_fakers(locales: Sequence[str], seed: int) -> dict[str, Faker]:
    """One Faker per locale, each seeded from ``seed``, so a generator run is reproducible."""
    fakers = {locale: _stable(Faker(locale)) for locale in locales}
    for index, fake in enumerate(fakers.values()):
        fake.seed_instance(seed * 1000 + index)
    return fakers
