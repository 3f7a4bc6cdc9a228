"""Synthetic ``entities`` data with exact gold labels: known values poured into templates.

As for ``pii``, the held-out split uses templates, Faker locales and product and event names
that training never sees, so the score measures extraction rather than recall of our phrasing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from faker import Faker

from specialists.builtin.fakers import seeded_fakers
from swarm.dataset import Example

TRAIN_LOCALES = ("en_US", "en_GB", "de_DE")
HELDOUT_LOCALES = ("fr_FR", "es_ES", "en_AU", "it_IT")

SLOT = re.compile(r"\{([A-Z]+?)(\d?)\}")

TRAIN_TEMPLATES = (
    "{ORGANIZATION} opened a new office in {LOCATION} on {DATE}.",
    "{PERSON} joined {ORGANIZATION} as chief engineer in {DATE}.",
    "{ORGANIZATION} will launch the {PRODUCT} at {EVENT} in {LOCATION}.",
    "The {PRODUCT} costs {MONEY} and ships from {LOCATION}.",
    "{PERSON} met {PERSON2} at {EVENT} to discuss a {MONEY} deal.",
    "On {DATE}, {ORGANIZATION} agreed to buy {ORGANIZATION2} for {MONEY}.",
    "{PERSON}, who lives in {LOCATION}, reviewed the {PRODUCT} for {ORGANIZATION}.",
    "{EVENT} takes place in {LOCATION} from {DATE}.",
    "Shares of {ORGANIZATION} rose after {PERSON} announced the {PRODUCT}.",
    "{ORGANIZATION} raised {MONEY} from investors in {LOCATION}.",
    "According to {PERSON}, the {PRODUCT} sold out within a week.",
    "{PERSON} flew from {LOCATION} to {LOCATION2} on {DATE}.",
    "At {EVENT}, {ORGANIZATION} showed the {PRODUCT} for the first time.",
    "The contract between {ORGANIZATION} and {ORGANIZATION2} is worth {MONEY}.",
    "{PERSON} will speak at {EVENT} on {DATE}.",
    "Our team in {LOCATION} ordered ten units of the {PRODUCT}.",
    "{ORGANIZATION} fined {MONEY} by regulators in {LOCATION}.",
    "Yesterday {PERSON} resigned from {ORGANIZATION}.",
    "The {PRODUCT} from {ORGANIZATION} now costs {MONEY}.",
    "{PERSON} and {PERSON2} founded {ORGANIZATION} in {LOCATION}.",
    "Tickets for {EVENT} went on sale on {DATE}.",
    "I bought a {PRODUCT} in {LOCATION} for {MONEY}.",
    "Nothing much happened at the office today.",
    "The weather was mild and the meeting ended early.",
)

HELDOUT_TEMPLATES = (
    "BREAKING: {ORGANIZATION} to cut 500 jobs in {LOCATION}, CEO {PERSON} says",
    "Q: Is the {PRODUCT} worth {MONEY}? A: {PERSON} thinks so.",
    "Press release ({LOCATION}, {DATE}) - {ORGANIZATION} partners with {ORGANIZATION2}.",
    "Hey, are you going to {EVENT}? {PERSON} got us passes.",
    "Reviewed by {PERSON} on {DATE}: my {PRODUCT} stopped working after a month.",
    "{LOCATION} hosts {EVENT} again this year, with prize money of {MONEY}.",
    "Memo: budget of {MONEY} approved for the {LOCATION} branch of {ORGANIZATION}.",
    "Obituary: {PERSON}, longtime director at {ORGANIZATION}, died on {DATE} in {LOCATION}.",
    "ok so {PERSON} said the {PRODUCT} is delayed again",
    "All quiet on the project front; no updates this week.",
)

TRAIN_PRODUCTS = ("iPhone 15", "Galaxy S24", "ThinkPad X1", "Model 3", "PlayStation 5", "Kindle")
HELDOUT_PRODUCTS = ("Pixel 9", "Surface Pro", "Xbox Series X", "MacBook Air", "Switch OLED")
TRAIN_EVENTS = ("CES", "the World Cup", "Web Summit", "the Olympic Games", "Mobile World Congress")
HELDOUT_EVENTS = ("Glastonbury Festival", "the Paris Air Show", "Gamescom", "the Tour de France")
DATE_FORMATS = ("%d %B %Y", "%B %d, %Y", "%B %Y", "%Y-%m-%d", "%A")


def _money(rng: random.Random) -> str:
    amount = rng.randint(2, 900)
    return rng.choice(
        [
            f"${amount:,}",
            f"${amount * 1000:,}",
            f"€{amount}.{rng.randint(0, 99):02d}",
            f"£{amount} million",
            f"{amount} billion dollars",
            f"EUR {amount * 100:,}",
        ]
    )


def _value(slot: str, fake: Faker, rng: random.Random, heldout: bool) -> str:
    makers: dict[str, Callable[[], str]] = {
        "PERSON": lambda: str(fake.name()),
        "ORGANIZATION": lambda: str(fake.company()),
        "LOCATION": lambda: str(rng.choice([fake.city, fake.city, fake.country])()),
        "DATE": lambda: fake.date_between("-5y", "+1y").strftime(rng.choice(DATE_FORMATS)),
        "PRODUCT": lambda: rng.choice(HELDOUT_PRODUCTS if heldout else TRAIN_PRODUCTS),
        "EVENT": lambda: rng.choice(HELDOUT_EVENTS if heldout else TRAIN_EVENTS),
        "MONEY": lambda: _money(rng),
    }
    return makers[slot]()


def render(template: str, fake: Faker, rng: random.Random, *, heldout: bool = False) -> Example:
    """Fill ``template``; the gold entities are the slot values in order of appearance."""
    parts, entities = [], []
    values: dict[str, str] = {}
    position = 0
    for match in SLOT.finditer(template):
        parts.append(template[position : match.start()])
        slot, key = match.group(1), match.group(1) + match.group(2)
        if key not in values:
            values[key] = _value(slot, fake, rng, heldout)
        parts.append(values[key])
        entities.append({"text": values[key], "type": slot})
        position = match.end()
    parts.append(template[position:])
    return Example(
        input={"text": "".join(parts)}, output={"entities": entities}, meta={"template": template}
    )


def generate(n: int, *, seed: int = 0, heldout: bool = False) -> list[Example]:
    """``n`` examples; ``heldout`` draws from templates, locales and names training never sees."""
    rng = random.Random(seed)
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    locales = HELDOUT_LOCALES if heldout else TRAIN_LOCALES
    fakers = seeded_fakers(locales, seed)
    return [
        render(rng.choice(templates), fakers[rng.choice(locales)], rng, heldout=heldout)
        for _ in range(n)
    ]
