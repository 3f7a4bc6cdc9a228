"""Synthetic ``pii`` data with exact gold labels: Faker values poured into many text templates.

Every value's position is known when the text is built, so the gold redaction and spans are
exact. Training and held-out data share nothing but the label set: the held-out split uses other
templates (other formats: logs, CSV lines, transcripts, forms) and other Faker locales, so a
student that only memorised our phrasing scores badly on it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from faker import Faker

from specialists.builtin.fakers import seeded_fakers
from specialists.builtin.pii import PII_TYPES
from swarm.dataset import Example

TRAIN_LOCALES = ("en_US", "en_GB", "de_DE", "es_ES")
HELDOUT_LOCALES = ("fr_FR", "it_IT", "nl_NL", "en_AU", "en_IE", "pt_BR")

SLOT = re.compile(r"\{([A-Z_]+?)(\d?)\}")

TRAIN_TEMPLATES = (
    "Contact {PERSON} at {EMAIL} or {PHONE}.",
    "Hi, my name is {PERSON} and I live at {ADDRESS}. Please send the invoice there.",
    "Customer {PERSON} (DOB {DATE_OF_BIRTH}) called about order {ORDER_ID}.",
    "Please charge card {CREDIT_CARD} for the {PRODUCT} order, thanks.",
    "Wire the refund of {AMOUNT} to IBAN {IBAN}, account holder {PERSON}.",
    "Login from {IP_ADDRESS} for user {EMAIL} was blocked on {DATE}.",
    "Dear {PERSON},\nyour appointment on {DATE} is confirmed. Reply to {EMAIL} to reschedule.",
    "Employee record: {PERSON}, SSN {SSN}, born {DATE_OF_BIRTH}.",
    "Ship to: {PERSON}, {ADDRESS}. Phone: {PHONE}.",
    "{PERSON} asked us to update the email on file to {EMAIL}.",
    "Our records show {PERSON} was born on {DATE_OF_BIRTH} and lives at {ADDRESS}.",
    "Ticket {ORDER_ID}: user {PERSON} cannot reset the password for {EMAIL}.",
    "The payment with card {CREDIT_CARD} failed; please call {PHONE}.",
    "Meeting notes: {PERSON} and {PERSON2} will review the {PRODUCT} launch on {DATE}.",
    "Forwarded message from {EMAIL}: please add {PERSON} to the mailing list.",
    "Suspicious requests came from {IP_ADDRESS} and {IP_ADDRESS2} last night.",
    "Patient {PERSON}, date of birth {DATE_OF_BIRTH}, SSN {SSN}, phone {PHONE}.",
    "Can you send the contract to {PERSON} at {ADDRESS}?",
    "Order {ORDER_ID} for {AMOUNT} was placed with card number {CREDIT_CARD}.",
    "Hello team, {PERSON} here. My new number is {PHONE}.",
    "Refund requested by {PERSON} <{EMAIL}> for order {ORDER_ID}.",
    "The {PRODUCT} arrived broken. Please contact me, {PERSON}, on {PHONE}.",
    "Direct debit mandate: IBAN {IBAN}, name {PERSON}, address {ADDRESS}.",
    "Note to self: call {PERSON} back about the {PRODUCT} quote of {AMOUNT}.",
    "Welcome aboard, {PERSON}! Your work email is {EMAIL}.",
    "Applicant: {PERSON}\nBorn: {DATE_OF_BIRTH}\nEmail: {EMAIL}\nPhone: {PHONE}",
    "The server at {IP_ADDRESS} rejected the upload from {PERSON}.",
    "Delivery for {PERSON} failed at {ADDRESS}; courier will retry on {DATE}.",
    "Our {PRODUCT} subscription renews on {DATE} for {AMOUNT}.",
    "Thanks for your order {ORDER_ID}! It ships on {DATE}.",
    "Account {IBAN} received a transfer of {AMOUNT} from {PERSON}.",
    "{PERSON} and {PERSON2} share the flat at {ADDRESS}.",
    "Verify identity: SSN {SSN}, date of birth {DATE_OF_BIRTH}.",
    "Please don't email {EMAIL} anymore, {PERSON} left the company.",
    "Reminder: the {PRODUCT} workshop starts on {DATE} in room 4.",
    "Emergency contact for {PERSON}: {PERSON2}, {PHONE}.",
)

HELDOUT_TEMPLATES = (
    "2024-05-01T10:22:13Z WARN auth failed user={EMAIL} src={IP_ADDRESS}",
    "name,email,phone\n{PERSON},{EMAIL},{PHONE}",
    "Agent: How can I help?\nCaller: This is {PERSON}, I moved to {ADDRESS}.\nAgent: Noted.",
    "FORM 12-B | Full name: {PERSON} | D.O.B.: {DATE_OF_BIRTH} | Social security no.: {SSN}",
    "pls refund to {IBAN} asap - {PERSON}",
    "Card on file ending differently? We charged {CREDIT_CARD} on {DATE} for {AMOUNT}.",
    '{{"customer": "{PERSON}", "contact": "{EMAIL}", "order": "{ORDER_ID}"}}',
    "Re: complaint - the {PRODUCT} I bought was faulty. Regards, {PERSON}, tel. {PHONE}",
    "Visitor log: {PERSON} signed in at reception, badge issued, host {PERSON2}.",
    "ALERT: 5 failed logins from {IP_ADDRESS} targeting {EMAIL}",
    "Tenant {PERSON} (born {DATE_OF_BIRTH}) gave notice for {ADDRESS}.",
    "Quick q - is {PHONE} still the best number for {PERSON}?",
    "Invoice {ORDER_ID} to be paid into {IBAN} by {DATE}.",
    "Student {PERSON}, enrolled {DATE}, guardian {PERSON2}, {EMAIL}",
    "No personal data here: order {ORDER_ID} of {PRODUCT} costs {AMOUNT}.",
)

PRODUCTS = ("laptop", "router", "coffee machine", "standing desk", "headset", "monitor", "tablet")
DOB_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%B %d, %Y", "%d %b %Y", "%d.%m.%Y")
DATE_FORMATS = ("%Y-%m-%d", "%d %B", "%B %d", "%A %d %B", "%d/%m")

PII_SLOTS = frozenset(PII_TYPES)


def _email(fake: Faker, rng: random.Random, person: str | None) -> str:
    if person and rng.random() < 0.5:
        parts = re.sub(r"[^a-z ]", "", person.lower()).split()
        if len(parts) >= 2:
            local = rng.choice([f"{parts[0]}.{parts[-1]}", f"{parts[0][0]}{parts[-1]}", parts[0]])
            return f"{local}@{fake.free_email_domain()}"
    return str(fake.email())


def _card(fake: Faker, rng: random.Random) -> str:
    number = str(fake.credit_card_number())
    if rng.random() < 0.5 and len(number) == 16:
        sep = rng.choice([" ", "-"])
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def _value(slot: str, fake: Faker, rng: random.Random, person: str | None) -> str:
    makers: dict[str, Callable[[], str]] = {
        "PERSON": lambda: str(
            rng.choice([fake.name, fake.name, lambda: f"{fake.first_name()} {fake.last_name()}"])()
        ),
        "EMAIL": lambda: _email(fake, rng, person),
        "PHONE": lambda: str(fake.phone_number()),
        "ADDRESS": lambda: str(fake.address()).replace("\n", ", "),
        "CREDIT_CARD": lambda: _card(fake, rng),
        "IBAN": lambda: str(fake.iban()),
        "SSN": lambda: str(Faker("en_US").ssn()) if rng.random() < 0.3 else str(fake.ssn()),
        "IP_ADDRESS": lambda: str(fake.ipv4() if rng.random() < 0.85 else fake.ipv6()),
        "DATE_OF_BIRTH": lambda: fake.date_of_birth(minimum_age=18).strftime(
            rng.choice(DOB_FORMATS)
        ),
        "ORDER_ID": lambda: rng.choice(["#", "ORD-", "A", ""]) + str(rng.randint(10000, 999999)),
        "AMOUNT": lambda: (
            rng.choice(["$", "€", "£"]) + f"{rng.randint(5, 4000)}.{rng.randint(0, 99):02d}"
        ),
        "DATE": lambda: fake.date_this_year().strftime(rng.choice(DATE_FORMATS)),
        "PRODUCT": lambda: rng.choice(PRODUCTS),
    }
    return makers[slot]()


def render(template: str, fake: Faker, rng: random.Random) -> Example:
    """Fill ``template``; the gold output redacts exactly the PII slots' values."""
    text, redacted, spans = [], [], []
    values: dict[str, str] = {}
    position = 0
    for match in SLOT.finditer(template):
        literal = template[position : match.start()].replace("{{", "{").replace("}}", "}")
        text.append(literal)
        redacted.append(literal)
        slot, index = match.group(1), match.group(2)
        key = slot + index
        if key not in values:
            values[key] = _value(slot, fake, rng, values.get("PERSON"))
        value = values[key]
        text.append(value)
        if slot in PII_SLOTS:
            redacted.append(f"[{slot}]")
            spans.append({"text": value, "type": slot})
        else:
            redacted.append(value)
        position = match.end()
    tail = template[position:].replace("{{", "{").replace("}}", "}")
    text.append(tail)
    redacted.append(tail)
    return Example(
        input={"text": "".join(text)},
        output={"redacted_text": "".join(redacted), "spans": spans},
        meta={"template": template},
    )


def generate(n: int, *, seed: int = 0, heldout: bool = False) -> list[Example]:
    """``n`` examples; ``heldout`` draws from templates and locales training never sees."""
    rng = random.Random(seed)
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    locales = HELDOUT_LOCALES if heldout else TRAIN_LOCALES
    fakers = seeded_fakers(locales, seed)
    examples = []
    for _ in range(n):
        fake = fakers[rng.choice(locales)]
        examples.append(render(rng.choice(templates), fake, rng))
    return examples


def describe() -> dict[str, Any]:
    return {
        "train": {"templates": len(TRAIN_TEMPLATES), "locales": list(TRAIN_LOCALES)},
        "heldout": {"templates": len(HELDOUT_TEMPLATES), "locales": list(HELDOUT_LOCALES)},
    }
