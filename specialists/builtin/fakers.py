"""Seeded Faker instances, one per locale, shared by the text generators."""

from __future__ import annotations

from collections.abc import Sequence

from faker import Faker


def seeded_fakers(locales: Sequence[str], seed: int) -> dict[str, Faker]:
    """One Faker per locale, each seeded from ``seed``, so a generator run is reproducible."""
    fakers = {locale: Faker(locale) for locale in locales}
    for index, fake in enumerate(fakers.values()):
        fake.seed_instance(seed * 1000 + index)
    return fakers
