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
from specialists.builtin.pii.finish import PII_TYPES
from swarm.distill.dataset import Example

TRAIN_LOCALES = ("en_US", "en_GB", "de_DE", "es_ES")
HELDOUT_LOCALES = ("fr_FR", "it_IT", "nl_NL", "en_AU", "en_IE", "pt_BR")

SLOT = re.compile(r"\{([A-Z_]+?)(\d?)\}")

TRAIN_SENTENCES = (
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

# More training formats. None copies a held-out format: the held-out log line, CSV header,
# agent/caller transcript, "FORM 12-B" dump, JSON record keys and short asks stay unseen here.
TRAIN_MESSAGES = (
    "Hi {PERSON},\n\nthanks for your call. As discussed, I'll post the forms to {ADDRESS}. "
    "If anything is missing, ring me on {PHONE}.\n\nBest,\n{PERSON2}",
    "Subject: new starter\n\n{PERSON} joins on {DATE}. Please set up {EMAIL} and a desk phone.",
    "Hello support, my {PRODUCT} stopped charging. Order {ORDER_ID}, bought on {DATE}. "
    "You can reach me at {EMAIL}.",
    "Dear {COMPANY} team,\nplease update my bank details to IBAN {IBAN}.\nSincerely,\n{PERSON}",
    "From: {PERSON} <{EMAIL}>\nTo: billing\nSubject: double charge\n\nI was billed {AMOUNT} "
    "twice on {DATE}.",
    "Hi! This is {PERSON} from {COMPANY}. Could someone call me back on {PHONE}? Thanks",
    "Good morning, I need a copy of my contract. My date of birth is {DATE_OF_BIRTH} and my "
    "policy number is {ORDER_ID}.",
    "Thanks for the quick delivery of the {PRODUCT}! Everything works fine.",
    "Reminder: the quarterly review is on {DATE}. No action needed.",
    "Hey {PERSON}, it's {PERSON2}. New number, save it: {PHONE}",
)

TRAIN_CHATS = (
    "[09:14] {PERSON}: can someone reset my vpn?\n[09:15] helpdesk: sure, what's your email?\n"
    "[09:15] {PERSON}: {EMAIL}",
    "{PERSON}: where should i send the parcel\n{PERSON2}: {ADDRESS}",
    "me: whats ur number again\nthem: {PHONE}",
    "<{PERSON}> the build server is {IP_ADDRESS} now\n<{PERSON2}> thx",
    "u still at {ADDRESS}? bringing the {PRODUCT} over later",
    "lol {PERSON} sent the wrong invoice again",
    "chat transcript #{ORDER_ID}\nuser: my card {CREDIT_CARD} got declined\nbot: sorry to hear "
    "that",
    "ok meeting moved to {DATE}, nothing else changed",
)

TRAIN_TICKETS = (
    "Ticket {ORDER_ID}\nPriority: high\nReporter: {PERSON} ({EMAIL})\nIssue: cannot log in from "
    "{IP_ADDRESS}",
    "Case {ORDER_ID} - caller {PERSON}, callback {PHONE}, issue: {PRODUCT} overheating",
    "Support request from {EMAIL}: the refund of {AMOUNT} has not arrived.",
    "INCIDENT {ORDER_ID}: unusual traffic from {IP_ADDRESS}; owner {PERSON} notified on {DATE}.",
    "Resolved: replacement {PRODUCT} shipped to {ADDRESS} for {PERSON}.",
    "Bug report: the export button does nothing on the settings page. Steps attached.",
)

TRAIN_FORMS = (
    "First name / last name: {PERSON}\nDate of birth: {DATE_OF_BIRTH}\nHome address:\n"
    "{ADDRESS_LINES}",
    "Full legal name ........ {PERSON}\nSSN ........ {SSN}\nTelephone ........ {PHONE}",
    "Cardholder: {PERSON}\nCard number: {CREDIT_CARD}\nAmount: {AMOUNT}",
    "Beneficiary: {PERSON}\nIBAN: {IBAN}\nReference: {ORDER_ID}",
    "Employer: {COMPANY}\nEmployee: {PERSON}\nStart date: {DATE}\nWork email: {EMAIL}",
    "PATIENT INTAKE\nName: {PERSON}\nDOB: {DATE_OF_BIRTH}\nNext of kin: {PERSON2} ({PHONE})",
    "Delivery address:\n{PERSON}\n{ADDRESS_LINES}",
    "Membership no. {ORDER_ID} | renewal {DATE} | fee {AMOUNT}",
)

TRAIN_RECORDS = (
    "id;full_name;dob\n{ORDER_ID};{PERSON};{DATE_OF_BIRTH}",
    "{PERSON};{PHONE};{ADDRESS}",
    "{EMAIL},{IP_ADDRESS},{DATE}",
    "employee_id,name,ssn\n{ORDER_ID},{PERSON},{SSN}",
    '{{"user": "{EMAIL}", "ip": "{IP_ADDRESS}", "dob": "{DATE_OF_BIRTH}"}}',
    '{{"holder": "{PERSON}", "iban": "{IBAN}", "amount": "{AMOUNT}"}}',
    "name={PERSON} phone={PHONE} addr={ADDRESS}",
    "sku,qty,price\n{ORDER_ID},2,{AMOUNT}",
    "[INFO] {DATE} session opened uid={EMAIL} ip={IP_ADDRESS}",
    "{IP_ADDRESS} - - [GET /account/settings] 200 user={EMAIL}",
    "[ERROR] payment declined card={CREDIT_CARD} order={ORDER_ID}",
    "DEBUG cache warmed in 35 ms, 1200 keys",
    "audit: {PERSON} exported customer list on {DATE} from {IP_ADDRESS}",
)

TRAIN_PARAGRAPHS = (
    "{PERSON} called on {DATE} about the {PRODUCT}. She was polite but frustrated. We promised "
    "a reply to {EMAIL} within two days.",
    "The landlord, {PERSON}, owns the flat at {ADDRESS}. Rent of {AMOUNT} goes to "
    "account {IBAN} each month.",
    "We noticed logins from {IP_ADDRESS} at 3am. The account belongs to {PERSON}. A reset link "
    "was sent to {EMAIL}.",
    "Our courier could not find the house. {PERSON} later confirmed the address as {ADDRESS}. "
    "The {PRODUCT} will be redelivered on {DATE}.",
    "The quarterly report is attached. Sales rose in every region. No customer data is included.",
    "{PERSON} was born on {DATE_OF_BIRTH}. Her SSN is {SSN}. She can be reached on {PHONE}.",
)

TRAIN_TEMPLATES = (
    TRAIN_SENTENCES
    + TRAIN_MESSAGES
    + TRAIN_CHATS
    + TRAIN_TICKETS
    + TRAIN_FORMS
    + TRAIN_RECORDS
    + TRAIN_PARAGRAPHS
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
TRAIN_PRODUCTS = (
    *PRODUCTS,
    "printer",
    "smartphone",
    "washing machine",
    "e-bike",
    "keyboard",
    "webcam",
    "smart watch",
    "vacuum cleaner",
    "gaming chair",
    "dishwasher",
    "camera",
    "sofa",
    "mattress",
    "electric kettle",
    "SIM card",
    "gift card",
)
DOB_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%B %d, %Y", "%d %b %Y", "%d.%m.%Y")
DATE_FORMATS = ("%Y-%m-%d", "%d %B", "%B %d", "%A %d %B", "%d/%m")
# Training draws from wider format sets; the held-out split keeps the lists above.
TRAIN_DOB_FORMATS = (
    *DOB_FORMATS,
    "%d-%m-%Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%Y/%m/%d",
    "%d/%m/%y",
    "%m-%d-%Y",
    "%Y%m%d",
)
TRAIN_DATE_FORMATS = (*DATE_FORMATS, "%d %b", "%b %d, %Y", "%m/%d", "%d.%m.", "%A", "%d/%m/%Y")
ORDER_PREFIXES = ("#", "ORD-", "A", "")
TRAIN_ORDER_PREFIXES = (*ORDER_PREFIXES, "INV-", "T-", "CS", "REF ", "PO-", "No. ")

PII_SLOTS = frozenset(PII_TYPES)
# Slots that render a PII type in another layout: ``ADDRESS_LINES`` is an address on several lines.
SLOT_TYPES = {"ADDRESS_LINES": "ADDRESS"}


def _email(fake: Faker, rng: random.Random, person: str | None) -> str:
    if person and rng.random() < 0.5:
        parts = re.sub(r"[^a-z ]", "", person.lower()).split()
        if len(parts) >= 2:
            local = rng.choice([f"{parts[0]}.{parts[-1]}", f"{parts[0][0]}{parts[-1]}", parts[0]])
            return f"{local}@{fake.free_email_domain()}"
    return str(fake.email())


def _train_email(fake: Faker, rng: random.Random, person: str | None) -> str:
    roll = rng.random()
    if roll < 0.6:
        return _email(fake, rng, person)
    parts = re.sub(r"[^a-z ]", "", (person or str(fake.name())).lower()).split() or ["info"]
    local = rng.choice(
        [
            f"{parts[0]}_{parts[-1]}",
            f"{parts[-1]}.{parts[0][0]}",
            f"{parts[0]}{rng.randint(1, 99)}",
            f"{parts[0]}.{parts[-1]}+news",
            str(fake.user_name()),
        ]
    )
    return f"{local}@{fake.domain_name()}"


def _digits(rng: random.Random, count: int) -> str:
    return "".join(str(rng.randint(0, 9)) for _ in range(count))


def _phone(fake: Faker, rng: random.Random) -> str:
    if rng.random() < 0.55:
        return str(fake.phone_number())
    d = _digits
    return rng.choice(
        [
            lambda: f"+1 ({rng.randint(201, 989)}) {d(rng, 3)}-{d(rng, 4)}",
            lambda: f"{rng.randint(201, 989)}.{d(rng, 3)}.{d(rng, 4)}",
            lambda: f"{rng.randint(201, 989)}-{d(rng, 3)}-{d(rng, 4)} ext. {d(rng, 3)}",
            lambda: f"+44 7{d(rng, 3)} {d(rng, 6)}",
            lambda: f"07{d(rng, 3)} {d(rng, 6)}",
            lambda: f"+49 15{d(rng, 1)} {d(rng, 8)}",
            lambda: f"0{rng.randint(30, 89)}/{d(rng, 7)}",
            lambda: f"+34 6{d(rng, 2)} {d(rng, 3)} {d(rng, 3)}",
            lambda: f"+1{rng.randint(201, 989)}{d(rng, 7)}",
            lambda: f"(0{d(rng, 2)}) {d(rng, 4)} {d(rng, 4)}",
        ]
    )()


def _address(fake: Faker, rng: random.Random, sep: str) -> str:
    roll = rng.random()
    if roll < 0.6:
        return str(fake.address()).replace("\n", sep)
    if roll < 0.8:
        return f"{fake.street_address()}{sep}{fake.postcode()} {fake.city()}"
    if roll < 0.9:
        return str(fake.street_address())
    return f"{fake.street_address()}, Apt {rng.randint(1, 40)}{sep}{fake.city()} {fake.postcode()}"


def _iban(fake: Faker, rng: random.Random) -> str:
    iban = str(fake.iban())
    if rng.random() < 0.4:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def _amount(rng: random.Random) -> str:
    whole, cents = rng.randint(5, 4000), rng.randint(0, 99)
    return rng.choice(
        [
            f"{rng.choice(['$', '€', '£'])}{whole}.{cents:02d}",
            f"{whole},{cents:02d} €",
            f"USD {whole:,}",
            f"{whole} EUR",
            f"£{whole:,}",
            f"${whole:,}.{cents:02d}",
        ]
    )


def _card(fake: Faker, rng: random.Random) -> str:
    number = str(fake.credit_card_number())
    if rng.random() < 0.5 and len(number) == 16:
        sep = rng.choice([" ", "-"])
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def _value(
    slot: str, fake: Faker, rng: random.Random, person: str | None, ssn_fake: Faker | None = None
) -> str:
    us = ssn_fake or Faker("en_US")
    makers: dict[str, Callable[[], str]] = {
        "PERSON": lambda: str(
            rng.choice([fake.name, fake.name, lambda: f"{fake.first_name()} {fake.last_name()}"])()
        ),
        "EMAIL": lambda: _email(fake, rng, person),
        "PHONE": lambda: str(fake.phone_number()),
        "ADDRESS": lambda: str(fake.address()).replace("\n", ", "),
        "CREDIT_CARD": lambda: _card(fake, rng),
        "IBAN": lambda: str(fake.iban()),
        "SSN": lambda: str(us.ssn()) if rng.random() < 0.3 else str(fake.ssn()),
        "IP_ADDRESS": lambda: str(fake.ipv4() if rng.random() < 0.85 else fake.ipv6()),
        "DATE_OF_BIRTH": lambda: fake.date_of_birth(minimum_age=18).strftime(
            rng.choice(DOB_FORMATS)
        ),
        "ORDER_ID": lambda: rng.choice(ORDER_PREFIXES) + str(rng.randint(10000, 999999)),
        "AMOUNT": lambda: (
            rng.choice(["$", "€", "£"]) + f"{rng.randint(5, 4000)}.{rng.randint(0, 99):02d}"
        ),
        "DATE": lambda: fake.date_this_year().strftime(rng.choice(DATE_FORMATS)),
        "PRODUCT": lambda: rng.choice(PRODUCTS),
    }
    return makers[slot]()


def _train_person(fake: Faker, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return str(fake.name())
    if roll < 0.75:
        return f"{fake.first_name()} {fake.last_name()}"
    if roll < 0.85:
        return f"{fake.last_name()}, {fake.first_name()}"
    if roll < 0.93:
        return f"{fake.first_name()} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {fake.last_name()}"
    return f"{fake.last_name().upper()} {fake.first_name()}"


def _train_value(
    slot: str, fake: Faker, rng: random.Random, person: str | None, ssn_fake: Faker
) -> str:
    makers: dict[str, Callable[[], str]] = {
        "PERSON": lambda: _train_person(fake, rng),
        "EMAIL": lambda: _train_email(fake, rng, person),
        "PHONE": lambda: _phone(fake, rng),
        "ADDRESS": lambda: _address(fake, rng, rng.choice([", ", ", ", " "])),
        "ADDRESS_LINES": lambda: _address(fake, rng, "\n"),
        "IBAN": lambda: _iban(fake, rng),
        "DATE_OF_BIRTH": lambda: fake.date_of_birth(minimum_age=18, maximum_age=95).strftime(
            rng.choice(TRAIN_DOB_FORMATS)
        ),
        "ORDER_ID": lambda: rng.choice(TRAIN_ORDER_PREFIXES) + str(rng.randint(1000, 9999999)),
        "AMOUNT": lambda: _amount(rng),
        "DATE": lambda: fake.date_between("-2y", "+1y").strftime(rng.choice(TRAIN_DATE_FORMATS)),
        "PRODUCT": lambda: rng.choice(TRAIN_PRODUCTS),
        "COMPANY": lambda: str(fake.company()),
    }
    if slot in makers:
        return makers[slot]()
    return _value(slot, fake, rng, person, ssn_fake)


def value(kind: str, fake: Faker, rng: random.Random, *, heldout: bool = False) -> str:
    """One made-up value of a PII type, seeded by ``fake`` and ``rng``: in the evaluation
    formats with ``heldout``, else in the wider training ones."""
    if heldout:
        return _value(kind, fake, rng, None, fake)
    return _train_value(kind, fake, rng, None, fake)


def render(
    template: str,
    fake: Faker,
    rng: random.Random,
    *,
    heldout: bool = False,
    ssn_fake: Faker | None = None,
) -> Example:
    """Fill ``template``; the gold output redacts exactly the PII slots' values.

    ``heldout=False`` draws values in the wider training formats.
    """
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
            if heldout:
                values[key] = _value(slot, fake, rng, values.get("PERSON"), ssn_fake)
            else:
                values[key] = _train_value(
                    slot, fake, rng, values.get("PERSON"), ssn_fake or Faker("en_US")
                )
        value = values[key]
        text.append(value)
        kind = SLOT_TYPES.get(slot, slot)
        if kind in PII_SLOTS:
            redacted.append(f"[{kind}]")
            spans.append({"text": value, "type": kind})
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


def _leaks(example: Example) -> bool:
    """Whether a span's text also occurs in the redacted text (a first name inside a word)."""
    output = example.output or {}
    return any(span["text"] in output["redacted_text"] for span in output["spans"])


def generate(n: int, *, seed: int = 0, heldout: bool = False) -> list[Example]:
    """``n`` examples; ``heldout`` draws from templates and locales training never sees."""
    rng = random.Random(seed)
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    locales = HELDOUT_LOCALES if heldout else TRAIN_LOCALES
    fakers = seeded_fakers(locales, seed)
    ssn_fake = seeded_fakers(["en_US"], seed * 7 + 1)["en_US"]  # US-style SSNs, also seeded
    examples = []
    for _ in range(n):
        fake = fakers[rng.choice(locales)]
        example = render(rng.choice(templates), fake, rng, heldout=heldout, ssn_fake=ssn_fake)
        while not heldout and _leaks(example):
            example = render(rng.choice(templates), fake, rng, heldout=False, ssn_fake=ssn_fake)
        examples.append(example)
    return examples


def describe() -> dict[str, Any]:
    return {
        "train": {"templates": len(TRAIN_TEMPLATES), "locales": list(TRAIN_LOCALES)},
        "heldout": {"templates": len(HELDOUT_TEMPLATES), "locales": list(HELDOUT_LOCALES)},
    }
