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
from swarm.distill.dataset import Example

TRAIN_LOCALES = (
    "en_US",
    "en_GB",
    "de_DE",
    "pl_PL",
    "sv_SE",
    "pt_PT",
    "da_DK",
    "cs_CZ",
    "ro_RO",
    "nl_BE",
    "fi_FI",
    "hu_HU",
)
"""Names, companies and places from many languages, none of them a held-out locale."""
HELDOUT_LOCALES = ("fr_FR", "es_ES", "en_AU", "it_IT")

SLOT = re.compile(r"\{([A-Z]+?)(\d?)\}")

# Training templates, grouped by register. None paraphrases a held-out template: the held-out
# formats (breaking-news banners, Q/A pairs, press-release datelines, reviews signed "Reviewed
# by", obituaries, memos about budgets, "ok so" chat) are deliberately left out here.
TRAIN_NEWS = (
    "{ORGANIZATION} opened a new office in {LOCATION} on {DATE}.",
    "{PERSON} joined {ORGANIZATION} as chief engineer in {DATE}.",
    "{ORGANIZATION} will launch the {PRODUCT} at {EVENT} in {LOCATION}.",
    "On {DATE}, {ORGANIZATION} agreed to buy {ORGANIZATION2} for {MONEY}.",
    "Shares of {ORGANIZATION} rose after {PERSON} announced the {PRODUCT}.",
    "{ORGANIZATION} raised {MONEY} from investors in {LOCATION}.",
    "The contract between {ORGANIZATION} and {ORGANIZATION2} is worth {MONEY}.",
    "{ORGANIZATION} fined {MONEY} by regulators in {LOCATION}.",
    "Yesterday {PERSON} resigned from {ORGANIZATION}.",
    "{PERSON} and {PERSON2} founded {ORGANIZATION} in {LOCATION}.",
    "{ORGANIZATION} Posts Record Quarter as {PRODUCT} Sales Top {MONEY}",
    "{PERSON} Named New Chair of {ORGANIZATION}",
    "{LOCATION} Court Blocks {ORGANIZATION} Merger With {ORGANIZATION2}",
    "Flooding in {LOCATION} forces organisers to postpone {EVENT}",
    "{ORGANIZATION} recalls thousands of {PRODUCT} units over battery fears",
    "Police in {LOCATION} said on {DATE} that no one was injured.",
    "The mayor of {LOCATION}, {PERSON}, unveiled a {MONEY} housing plan.",
    "{ORGANIZATION} said it would cut prices on the {PRODUCT} starting {DATE}.",
    "Investors pulled {MONEY} out of {ORGANIZATION} funds last quarter, filings show.",
    "{PERSON}, a spokesperson for {ORGANIZATION}, declined to comment.",
    "Analysts expect {ORGANIZATION} to report revenue of about {MONEY} on {DATE}.",
    "{ORGANIZATION} and {ORGANIZATION2} signed a supply deal in {LOCATION}.",
    "Unemployment fell slightly last month, the statistics office said.",
    # Quantities that are not money, beside entities that are.
    "{ORGANIZATION} plans to hire 300 engineers in {LOCATION} by {DATE}.",
    "{ORGANIZATION} sold 2 million units of the {PRODUCT} in its first week.",
    "About 12,000 people attended {EVENT} in {LOCATION}.",
    "Shares in {ORGANIZATION} fell 8 percent after {PERSON} stepped down.",
    "{ORGANIZATION} will close 40 stores across {LOCATION}, {PERSON} said.",
    "{PERSON} waited 3 hours at {LOCATION} airport on {DATE}.",
    # Places at the start of a sentence, and entities that end one.
    "{LOCATION} reported record visitor numbers on {DATE}.",
    "{LOCATION} will welcome {EVENT} next spring, organisers said.",
    "Her new employer is {ORGANIZATION}.",
    "After {EVENT}, {PERSON} moved back to {LOCATION}.",
)

TRAIN_PARAGRAPHS = (
    "{PERSON} spent ten years at {ORGANIZATION} before moving to {LOCATION}. Last spring she "
    "started a consultancy. Her first client paid {MONEY}.",
    "{ORGANIZATION} confirmed the data breach on {DATE}. Customers in {LOCATION} were the worst "
    "affected. Regulators have opened an inquiry.",
    "The {PRODUCT} was the star of {EVENT}. Visitors queued for hours. {PERSON} of "
    "{ORGANIZATION} called it a turning point.",
    "Prices climbed again this week. Fuel was the biggest driver. Economists at {ORGANIZATION} "
    "expect relief by {DATE}.",
    "{PERSON} grew up in {LOCATION}. After university he joined {ORGANIZATION}, where he led "
    "the team behind the {PRODUCT}. He retired on {DATE}.",
    "We visited {LOCATION} for {EVENT}. The crowds were huge. Hotels charged {MONEY} a night.",
    "The board met on {DATE}. It approved a buyback worth {MONEY}. {PERSON} abstained.",
    "It rained all afternoon. The train was late, so the talk started an hour behind schedule.",
    "{ORGANIZATION2} had been losing money for years. {ORGANIZATION} bought it for {MONEY} "
    "and moved its headquarters to {LOCATION}.",
    "Organisers of {EVENT} expect record attendance. {PERSON}, who runs the programme, said "
    "tickets sold out by {DATE}.",
)

TRAIN_EMAILS = (
    "Hi {PERSON},\n\nThanks for meeting us in {LOCATION}. I've attached the {PRODUCT} quote "
    "({MONEY}). Let me know by {DATE}.\n\nBest,\n{PERSON2}",
    "Subject: {EVENT} travel\n\nTeam, flights to {LOCATION} are booked. {PERSON2} will "
    "collect the badges.\n\n{PERSON}",
    "Dear {PERSON},\nWe are pleased to offer you the role of analyst at {ORGANIZATION}, "
    "starting {DATE}, with a salary of {MONEY}.\nKind regards,\n{PERSON2}",
    "To: all staff\nFrom: {PERSON}\nRe: office move\n\nFrom {DATE} we work out of the "
    "{LOCATION} building.",
    "Hello,\n\nyour {PRODUCT} order has shipped and should arrive on {DATE}.\n\nCheers,\n"
    "{ORGANIZATION} support",
    "Hi all, quick reminder that the kitchen gets cleaned tonight. Please label your food.",
    "FYI: {ORGANIZATION} moved the kickoff to {DATE}. Same room, same agenda. - {PERSON}",
    "Good morning {PERSON}, could you send me the slides from {EVENT}? Thanks, {PERSON2}",
)

TRAIN_CHAT = (
    "lol {PERSON} just bought another {PRODUCT}",
    "anyone driving to {LOCATION} tomorrow",
    "cant believe {EVENT} tickets are {MONEY} now",
    "{PERSON} r u still at {ORGANIZATION}",
    "omw to {LOCATION} see u at 6",
    "my {PRODUCT} died again smh",
    "did {ORGANIZATION} ever reply about the refund",
    "{PERSON} and {PERSON2} are coming to {EVENT} too",
    "brb getting coffee",
    "lunch at {LOCATION}? {PERSON} is paying",
    "just got an offer from {ORGANIZATION} for {MONEY} what do i do",
    "haha no idea what time it is there",
)

TRAIN_SOCIAL = (
    "Just landed in {LOCATION} for {EVENT}! Who else is here? #travel",
    "Huge congrats to {PERSON} on the new role at {ORGANIZATION} 🎉",
    "Unboxing my new {PRODUCT} tonight, stay tuned",
    "{MONEY} for a sandwich in {LOCATION}?? never again",
    "Watching {EVENT} live from {LOCATION} with {PERSON}. What a game!",
    "Thread: everything {ORGANIZATION} announced on {DATE} 🧵",
    "Current mood: coffee, rain and way too many emails.",
    "Proud to share that our team won the innovation award at {EVENT}! #teamwork",
)

TRAIN_REVIEWS = (
    "5 stars. The {PRODUCT} arrived two days early and works perfectly.",
    "Bought the {PRODUCT} for {MONEY}. Battery life is poor, screen is great. 3/5.",
    "Stayed in {LOCATION} during {EVENT}; the hotel staff were lovely.",
    "Customer service at {ORGANIZATION} was slow, but {PERSON} sorted it out in the end.",
    "Would not recommend. The hinge cracked and the refund took ages.",
    "Great value at {MONEY}, although the {PRODUCT} runs hot under load.",
    "Ordered on {DATE}, arrived damaged. {ORGANIZATION} replaced it for free.",
)

TRAIN_NOTES = (
    "Meeting notes ({DATE})\nAttendees: {PERSON}, {PERSON2}\n- budget: {MONEY}\n- next "
    "step: demo for {ORGANIZATION}",
    "Action items:\n- {PERSON} to book venue in {LOCATION}\n- {PERSON2} to confirm {EVENT} "
    "booth\n- finance to release {MONEY}",
    "Agenda\n1. quarterly results\n2. {PRODUCT} roadmap\n3. AOB",
    "Notes: call with {ORGANIZATION} went well. They want a pilot in {LOCATION} by {DATE}.",
    "Standup - yesterday: fixed login bug. today: code review. blockers: none.",
    "- {PERSON} out of office until {DATE}\n- {ORGANIZATION} invoice paid ({MONEY})",
    "Minutes: {PERSON} opened the session. {PERSON2} presented the {PRODUCT} pilot results. "
    "Vote postponed.",
    "TODO: renew {PRODUCT} licence, email {PERSON} about {EVENT}",
)

TRAIN_RECORDS = (
    "Name: {PERSON}\nCompany: {ORGANIZATION}\nCity: {LOCATION}",
    "vendor={ORGANIZATION}; amount={MONEY}; due={DATE}",
    "{PERSON},{ORGANIZATION},{LOCATION},{DATE}",
    "Item: {PRODUCT} | Price: {MONEY} | Seller: {ORGANIZATION}",
    "Event: {EVENT}\nVenue: {LOCATION}\nDate: {DATE}\nHost: {ORGANIZATION}",
    "Speaker: {PERSON} ({ORGANIZATION})\nSession: closing keynote\nWhen: {DATE}",
    "status: shipped; carrier: standard; weight: 2.4 kg",
    "Expense claim - {PERSON} - {MONEY} - travel to {LOCATION}",
    "Product | Units | Revenue\n{PRODUCT} | 1200 | {MONEY}",
    "Location: {LOCATION}, Organiser: {ORGANIZATION}, Budget: {MONEY}",
)

TRAIN_QUESTIONS = (
    "Does anyone know when {EVENT} starts this year?",
    "How much did {ORGANIZATION} pay for {ORGANIZATION2}?",
    "Where can I buy a {PRODUCT} in {LOCATION}?",
    "Did {PERSON} really leave {ORGANIZATION} on {DATE}?",
    "Who is going to replace {PERSON} as head of sales?",
    "Is it true that tickets for {EVENT} cost {MONEY}?",
    "What time does the shop close on weekdays?",
    "Can you remind me which hotel we booked in {LOCATION}?",
)

TRAIN_MISC = (
    "The {PRODUCT} costs {MONEY} and ships from {LOCATION}.",
    "{PERSON} met {PERSON2} at {EVENT} to discuss a {MONEY} deal.",
    "{PERSON}, who lives in {LOCATION}, reviewed the {PRODUCT} for {ORGANIZATION}.",
    "{EVENT} takes place in {LOCATION} from {DATE}.",
    "According to {PERSON}, the {PRODUCT} sold out within a week.",
    "{PERSON} flew from {LOCATION} to {LOCATION2} on {DATE}.",
    "At {EVENT}, {ORGANIZATION} showed the {PRODUCT} for the first time.",
    "{PERSON} will speak at {EVENT} on {DATE}.",
    "Our team in {LOCATION} ordered ten units of the {PRODUCT}.",
    "The {PRODUCT} from {ORGANIZATION} now costs {MONEY}.",
    "Tickets for {EVENT} went on sale on {DATE}.",
    "I bought a {PRODUCT} in {LOCATION} for {MONEY}.",
    "Nothing much happened at the office today.",
    "The weather was mild and the meeting ended early.",
    "Please find the signed contract attached.",
    "Call {PERSON}.",
    "{LOCATION}",
    "Deadline: {DATE}",
    "Thanks again to {ORGANIZATION} for sponsoring {EVENT}, and to {PERSON} for hosting us in "
    "{LOCATION}.",
    "Between {DATE} and {DATE2}, {PERSON} visited {LOCATION}, {LOCATION2} and {LOCATION3}.",
    "We switched from the {PRODUCT} to the {PRODUCT2} after the price rose to {MONEY}.",
    "My sister works for {ORGANIZATION} near {LOCATION}.",
    "The final bill came to {MONEY}, split between {PERSON} and {PERSON2}.",
)

TRAIN_TEMPLATES = (
    TRAIN_NEWS
    + TRAIN_PARAGRAPHS
    + TRAIN_EMAILS
    + TRAIN_CHAT
    + TRAIN_SOCIAL
    + TRAIN_REVIEWS
    + TRAIN_NOTES
    + TRAIN_RECORDS
    + TRAIN_QUESTIONS
    + TRAIN_MISC
)
# Chat messages are sometimes typed entirely in lower case, entity values included.
LOWERCASE_TEMPLATES = frozenset(TRAIN_CHAT)

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

TRAIN_PRODUCTS = (
    "iPhone 15",
    "Galaxy S24",
    "ThinkPad X1",
    "Model 3",
    "PlayStation 5",
    "Kindle",
    "iPad Mini",
    "Galaxy Buds",
    "AirPods Pro",
    "Apple Watch",
    "Echo Dot",
    "Fire TV Stick",
    "Steam Deck",
    "Quest 3",
    "GoPro Hero 12",
    "Dyson V15",
    "Roomba j7",
    "Nespresso Vertuo",
    "Instant Pot",
    "Thermomix TM6",
    "Kindle Paperwhite",
    "Model Y",
    "Ford F-150",
    "Toyota Corolla",
    "Vespa Primavera",
    "Brompton C Line",
    "Peloton Bike",
    "Fitbit Charge 6",
    "Garmin Forerunner 265",
    "Sonos Era 100",
    "Bose QuietComfort",
    "Canon EOS R6",
    "Nikon Z8",
    "DJI Mini 4",
    "Raspberry Pi 5",
    "Dell XPS 13",
    "ZenBook 14",
    "OnePlus 12",
    "Photoshop",
    "Windows 11",
    "Slack",
    "Excel",
    "Spotify Premium",
    "Lego Millennium Falcon",
    "Tamagotchi",
)
HELDOUT_PRODUCTS = ("Pixel 9", "Surface Pro", "Xbox Series X", "MacBook Air", "Switch OLED")
TRAIN_EVENTS = (
    "CES",
    "the World Cup",
    "Web Summit",
    "the Olympic Games",
    "Mobile World Congress",
    "the Super Bowl",
    "Wimbledon",
    "the Boston Marathon",
    "Comic-Con",
    "SXSW",
    "Burning Man",
    "Coachella",
    "Oktoberfest",
    "the Eurovision Song Contest",
    "the Oscars",
    "the Grammy Awards",
    "the Cannes Film Festival",
    "the Chelsea Flower Show",
    "the Frankfurt Book Fair",
    "IFA Berlin",
    "Hannover Messe",
    "the World Economic Forum",
    "the G20 summit",
    "COP28",
    "the Commonwealth Games",
    "the Ryder Cup",
    "the US Open",
    "the Rugby World Cup",
    "the London Marathon",
    "the Edinburgh Fringe",
    "the Venice Biennale",
    "Art Basel",
    "Dreamforce",
    "Google I/O",
    "WWDC",
    "the Champions League final",
    "the Kentucky Derby",
    "the Lunar New Year parade",
    "PyCon",
    "the Consumer Electronics Show",
)
HELDOUT_EVENTS = ("Glastonbury Festival", "the Paris Air Show", "Gamescom", "the Tour de France")
# Real organisations and places, used in training next to Faker's invented ones.
TRAIN_ORGANIZATIONS = (
    "Siemens",
    "Toyota",
    "Unilever",
    "Deutsche Bank",
    "the World Health Organization",
    "NASA",
    "the BBC",
    "Amazon",
    "Netflix",
    "Samsung",
    "Goldman Sachs",
    "the European Central Bank",
    "Greenpeace",
    "the United Nations",
    "Volkswagen",
    "HSBC",
    "Spotify",
    "Pfizer",
    "the Red Cross",
    "Stanford University",
    "the Federal Reserve",
    "IKEA",
    "Boeing",
    "Shell",
    "Reuters",
    "the NHS",
    "Tesla",
    "Nike",
    "OpenAI",
    "the IMF",
)
TRAIN_PLACES = (
    "Tokyo",
    "New York",
    "Berlin",
    "Nairobi",
    "São Paulo",
    "Mumbai",
    "Toronto",
    "Seoul",
    "Cairo",
    "Lagos",
    "Chicago",
    "Singapore",
    "Dubai",
    "Oslo",
    "Warsaw",
    "Mexico City",
    "Jakarta",
    "Boston",
    "Vancouver",
    "Stockholm",
    "Istanbul",
    "Bangkok",
    "Cape Town",
    "Manchester",
    "Edinburgh",
    "Texas",
    "California",
    "Bavaria",
    "Silicon Valley",
    "Southeast Asia",
    "the Alps",
    "Europe",
)
DATE_FORMATS = ("%d %B %Y", "%B %d, %Y", "%B %Y", "%Y-%m-%d", "%A")
TRAIN_DATE_FORMATS = (
    *DATE_FORMATS,
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%b %d",
    "%d %b",
    "%B %d",
    "%Y",
    "%A, %B %d",
    "%d %b %Y",
)
TRAIN_DATE_PHRASES = ("Q3 2023", "spring 2025", "mid-2024", "the 1990s", "early 2026", "FY2024")


def _money(rng: random.Random, heldout: bool = True) -> str:
    amount = rng.randint(2, 900)
    if heldout:  # the held-out formats, drawn exactly as before
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
    cents = rng.randint(0, 99)
    return rng.choice(
        [
            f"${amount:,}",
            f"${amount * 1000:,}",
            f"€{amount}.{cents:02d}",
            f"£{amount} million",
            f"{amount} billion dollars",
            f"EUR {amount * 100:,}",
            f"${amount}.{cents:02d}",
            f"${amount / 10:.1f} billion",
            f"${amount}m",
            f"${amount}bn",
            f"£{amount * 10:,}",
            f"€{amount} million",
            f"{amount * 10:,} euros",
            f"{amount} dollars",
            f"USD {amount * 1000:,}",
            f"GBP {amount}.{cents:02d}",
            f"CHF {amount * 100:,}",
            f"¥{amount * 1000:,}",
            f"{amount * 1000:,} yen",
            f"Rs {amount * 100:,}",
            f"{amount},{cents:02d} €",
            f"US${amount} million",
            f"{amount} pounds",
        ]
    )


def _person(fake: Faker, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.7:
        return str(fake.name())
    if roll < 0.85:
        return f"{fake.first_name()} {fake.last_name()}"
    if roll < 0.93:
        return f"{rng.choice(['Dr.', 'Mr', 'Ms', 'Mrs.', 'Prof.'])} {fake.last_name()}"
    return f"{fake.first_name()} {rng.choice('ABCDEFGHJKLMNPRSTW')}. {fake.last_name()}"


def _date(fake: Faker, rng: random.Random) -> str:
    if rng.random() < 0.08:
        return rng.choice(TRAIN_DATE_PHRASES)
    return fake.date_between("-5y", "+1y").strftime(rng.choice(TRAIN_DATE_FORMATS))


def _value(slot: str, fake: Faker, rng: random.Random, heldout: bool) -> str:
    if heldout:  # held-out values are drawn exactly as they always were
        makers: dict[str, Callable[[], str]] = {
            "PERSON": lambda: str(fake.name()),
            "ORGANIZATION": lambda: str(fake.company()),
            "LOCATION": lambda: str(rng.choice([fake.city, fake.city, fake.country])()),
            "DATE": lambda: fake.date_between("-5y", "+1y").strftime(rng.choice(DATE_FORMATS)),
            "PRODUCT": lambda: rng.choice(HELDOUT_PRODUCTS),
            "EVENT": lambda: rng.choice(HELDOUT_EVENTS),
            "MONEY": lambda: _money(rng),
        }
        return makers[slot]()
    makers = {
        "PERSON": lambda: _person(fake, rng),
        "ORGANIZATION": lambda: (
            rng.choice(TRAIN_ORGANIZATIONS) if rng.random() < 0.35 else str(fake.company())
        ),
        "LOCATION": lambda: (
            rng.choice(TRAIN_PLACES)
            if rng.random() < 0.35
            else str(rng.choice([fake.city, fake.city, fake.country])())
        ),
        "DATE": lambda: _date(fake, rng),
        "PRODUCT": lambda: rng.choice(TRAIN_PRODUCTS),
        "EVENT": lambda: rng.choice(TRAIN_EVENTS),
        "MONEY": lambda: _money(rng, heldout=False),
    }
    return makers[slot]()


def _starts_sentence(parts: list[str]) -> bool:
    before = "".join(parts).rstrip(" ")
    return not before or before.endswith((".", "!", "?", "\n", ":"))


def render(template: str, fake: Faker, rng: random.Random, *, heldout: bool = False) -> Example:
    """Fill ``template``; the gold entities are the slot values in order of appearance."""
    parts, entities = [], []
    values: dict[str, str] = {}
    position = 0
    lower = not heldout and template in LOWERCASE_TEMPLATES and rng.random() < 0.5
    for match in SLOT.finditer(template):
        parts.append(template[position : match.start()])
        slot, key = match.group(1), match.group(1) + match.group(2)
        if key not in values:
            value = _value(slot, fake, rng, heldout)
            if lower:
                value = value.lower()
            elif not heldout and value.startswith("the ") and _starts_sentence(parts):
                value = "T" + value[1:]
            values[key] = value
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
