"""Postal addresses found by their shape: a street and house number, then the parts after it.

The 135M student misses whole addresses in layouts it saw little of in training (an Australian
"Unit 7 36 Blanchard Run, Angelaberg, QLD, 4585", an Irish eircode). A redactor that leaves a
home address in the clear has failed at its one job, so addresses are also read as a postal
parser reads them. A street is one of:

- a house number beside a street type ("36 Blanchard Run", "32, boulevard de Cohen");
- a type before the name, then the number ("Via Roma 12", "Rua das Flores, 123");
- one word ending in a Germanic street word ("Hauptstraße 5", "Jiplaan 79").

After it come up to :data:`MOST_PARTS` unit, postcode, town and state parts. Shapes that other
text has too need more evidence: a street written without a number ("rue Bertin, 31469
Marion"), or with a street type that is also an English word ("via", "-ring"), counts only when
a postcode follows it, and a number and name before a street type ("3 Easy Steps") only after a
word that introduces an address or before a postcode or state.

The street types are the postal services' own lists (USPS Publication 28, Australia's AS 4590,
Italy's DUG, Brazil's Correios, Spain's, France's, the Dutch and German street words), which
Faker's locales also draw from; README says what that means for the held-out figures.
"""

from __future__ import annotations

import re

from specialists.builtin.text import MONTH_NAMES, WEEKDAY, pattern

UPPER = "A-ZÀ-ÖØ-Þ"
APOSTROPHES = "'\u2019"
SAINT = r"(?:St|Mt|Ft|Pt)\.\s?"
"""An abbreviation that opens a name with the word after it ("St. Albans", "Mt. Eden")."""
_CAPITAL = rf"(?:{SAINT}[{UPPER}][\w{APOSTROPHES}-]*|[{UPPER}][\w{APOSTROPHES}-]*)"
"""A capitalised word; "St. Albans" and the like are one."""
_NAME_PARTICLES = (
    r"de|del|della|delle|dei|des|di|da|das|do|dos|du|la|le|les|van|von|der|den|ten|ter|y|e"
)
NAME_PARTICLES = rf"(?:{_NAME_PARTICLES})"
"""Lower-case words inside a street's name ("Rua das Flores", "boulevard de Cohen")."""
PARTICLES = rf"(?:{_NAME_PARTICLES}|of|the|an|am|im|bei|ob|sur|sous|en|upon|on)"
"""Lower-case words inside a town's name ("Pfaffenhofen an der Ilm", "Stratford upon Avon")."""
NAME_WORD = rf"(?:{_CAPITAL}|{NAME_PARTICLES}|\d+(?:st|nd|rd|th|ª|º)?)"
"""A word of a street's name: capitalised, a particle, or an ordinal ("5th Avenue")."""
NOT_TOWNS = (
    rf"{WEEKDAY}|{MONTH_NAMES}|Thanks|Thank|Regards|Cheers"
    r"|Best|Kind|Hi|Hello|Dear|Yes|No|Please|Sincerely|Today|Tomorrow|Yesterday"
)
"""Capitalised words after a comma that are no town ("5 Baker Street, Tuesday")."""
_TOWN_CAPITAL = (
    rf"(?!(?:{NOT_TOWNS})\b)"
    rf"(?:{SAINT})?[{UPPER}][\w{APOSTROPHES}]*(?:-[\w{APOSTROPHES}]+)*"
)
"""A capitalised word of a town's name, with its hyphenated parts ("Aubry-sur-Mer",
"Fayt-lez-Manage"). Words are joined by spaces only: a hyphen both inside a word and between
words would let the pattern split "A-A-A-..." in exponentially many ways."""
_TOWN_WORD = rf"(?:{_TOWN_CAPITAL}|\d+[ªº])"
TOWN = rf"(?:{PARTICLES} )*{_TOWN_CAPITAL}(?: (?:{PARTICLES} )*{_TOWN_WORD}){{0,6}}"
"""A town: capitalised words, particles among them ("Santa Cristina Di Borgomanero", "da
Cunha"), on one line."""

SUFFIXES = [
    # USPS Publication 28 and AS 4590 street types, with Royal Mail's common ones.
    "Access", "Alley", "Alleyway", "Amble", "Anchorage", "Approach", "Arcade", "Artery", "Avenue",
    "Ave", "Bank", "Basin", "Bay", "Beach", "Bend", "Block", "Boulevard", "Blvd", "Brace", "Brae",
    "Branch", "Break", "Bridge", "Broadway", "Brook", "Brow", "Burg", "Bypass", "Byway", "Camp",
    "Canyon", "Cape", "Causeway", "Center", "Centre", "Centreway", "Chase", "Circle", "Circlet",
    "Circuit", "Circus", "Cir", "Cliff", "Close", "Cl", "Club", "Colonnade", "Common", "Concourse",
    "Copse", "Corner", "Corso", "Course", "Court", "Ct", "Courtyard", "Cove", "Creek", "Crescent",
    "Cres", "Crest", "Cross", "Crossing", "Crossroad", "Crossway", "Cruiseway", "Curve", "Cutting",
    "Dale", "Dell", "Deviation", "Dip", "Distributor", "Divide", "Drive", "Dr", "Driveway", "Edge",
    "Elbow", "End", "Entrance", "Esplanade", "Estate", "Expressway", "Extension", "Fairway",
    "Fall", "Falls", "Ferry", "Field", "Firetrail", "Flat", "Follow", "Footway", "Ford",
    "Foreshore", "Forest", "Forge", "Fork", "Formation", "Fort", "Freeway", "Front", "Frontage",
    "Gap", "Garden", "Gate", "Gateway", "Glade", "Glen", "Grange", "Green", "Ground", "Grove",
    "Gully", "Harbor", "Harbour", "Haven", "Heights", "Highroad", "Highway", "Hwy", "Hill",
    "Hollow", "Inlet", "Interchange", "Island", "Isle", "Junction", "Key", "Knoll", "Lake", "Land",
    "Landing", "Lane", "Ln", "Laneway", "Lees", "Light", "Line", "Link", "Loaf", "Lock", "Lodge",
    "Lookout", "Loop", "Mall", "Manor", "Meadow", "Meander", "Mew", "Mews", "Mill", "Mission",
    "Motorway", "Mount", "Mountain", "Neck", "Nook", "Orchard", "Outlook", "Oval", "Overpass",
    "Parade", "Park", "Parkway", "Pkwy", "Part", "Pass", "Passage", "Path", "Pathway", "Piazza",
    "Pike", "Pine", "Place", "Pl", "Plain", "Plateau", "Plaza", "Pocket", "Point", "Port",
    "Prairie", "Precinct", "Promenade", "Quad", "Quadrangle", "Quadrant", "Quay", "Radial",
    "Ramble", "Ramp", "Ranch", "Range", "Rapid", "Reach", "Reserve", "Rest", "Retreat", "Ride",
    "Ridge", "Ridgeway", "Rise", "River", "Riverway", "Riviera", "Road", "Rd", "Roadside",
    "Roadway", "Ronde", "Rosebowl", "Rotary", "Round", "Route", "Row", "Rue", "Run", "Shoal",
    "Shore", "Siding", "Skyway", "Slope", "Sound", "Spring", "Spur", "Square", "Sq", "Stairs",
    "Station", "Steps", "Strand", "Stravenue", "Stream", "Street", "St", "Strip", "Subway",
    "Summit", "Tarn", "Terrace", "Tce", "Ter", "Throughway", "Tollway", "Top", "Tor", "Tower",
    "Trace", "Track", "Trafficway", "Trail", "Trailer", "Triangle", "Trunkway", "Tunnel", "Turn",
    "Turnpike", "Underpass", "Union", "Vale", "Valley", "Viaduct", "View", "Village", "Villa",
    "Ville", "Vista", "Wade", "Walk", "Walkway", "Wall", "Way", "Well", "Wharf", "Wynd", "Yard",
]  # fmt: skip
"""Street types written after the name; each may be plural ("Greens", "Mills")."""
PREFIXES = [
    # French
    "rue", "avenue", "av", "boulevard", "bd", "chemin", "allée", "allee", "impasse", "quai",
    "sentier", "rond-point", "faubourg", "lieu-dit", "parvis", "montée", "ruelle",
    # Italian (DUG)
    "via", "viale", "piazza", "piazzale", "piazzetta", "corso", "vicolo", "vico", "strada",
    "contrada", "borgo", "largo", "lungomare", "rotonda", "stretto", "incrocio", "salita",
    "discesa", "canale", "galleria", "località", "frazione", "rione", "traversa",
    "sentiero", "circonvallazione", "borgata",
    # Spanish
    "calle", "avenida", "avda", "paseo", "plaza", "camino", "carretera", "ronda", "glorieta",
    "callejón", "callejon", "pasaje", "rambla", "travesía", "travesia", "cuesta", "urbanización",
    "urbanizacion", "pasadizo", "cañada", "acceso", "alameda", "bajada", "subida", "vía", "vial",
    "partida", "polígono", "barrio", "carrera", "diagonal",
    # Portuguese (Correios)
    "rua", "travessa", "praça", "praca", "estrada", "rodovia", "ladeira", "beco", "aeroporto",
    "área", "campo", "chácara", "colônia", "condomínio", "conjunto", "distrito", "estação",
    "favela", "fazenda", "feira", "jardim", "lago", "lagoa", "loteamento", "morro", "núcleo",
    "parque", "passarela", "pátio", "praia", "quadra", "recanto", "residencial", "setor", "sítio",
    "trecho", "trevo", "vale", "vereda", "viaduto", "viela", "vila",
    # Polish
    "ulica", "ul", "aleja", "plac", "osiedle",
]  # fmt: skip
"""Street types written before the name, capitalised or not ("Rue", "rue"). Types that are
everyday English words are left out ("place", "route", "square", "mail"), or taken only
capitalised unless a postcode follows (:data:`ENGLISH_WORDS`)."""
ENGLISH_WORDS = ("via", "plaza", "vale", "diagonal", "vial", "campo", "largo", "lago")
"""Street types written before the name that English text also uses ("sent via FedEx 2 days
ago"): written in lower case, such a street counts only with a postcode after it."""
GERMANIC = [
    "straße", "strasse", "str", "straat", "weg", "laan", "plein", "gracht", "hof", "kade",
    "singel", "dijk", "dreef", "steeg", "markt", "baan", "boulevard", "gasse", "platz",
    "allee", "ring", "pad", "gate", "damm", "ufer", "chaussee", "pfad", "stieg", "gata", "gatan",
    "vej", "vägen", "veien", "gade", "väg",
]  # fmt: skip
"""Street words written as the end of one word ("Hauptstraße", "Jiplaan")."""
ENGLISH_ENDINGS = ("ring", "pad", "gate")
"""Street-word endings that end English words too ("During 2020", "Notepad 2"): such a street
counts only with a postcode after it."""
UNITS = [
    "Unit", "Apt", "Apartment", "Flat", "Suite", "Ste", "Level", "Lvl", "Shop", "Studio", "Room",
    "Floor", "Fl", "Piso", "Puerta", "Piano", "Appartamento", "Interno", "Scala", "Étage", "Etage",
    "Bloco", "Andar", "Casa", "Lote", "Bus",
]  # fmt: skip
"""Words that open a unit within a building ("Apt. 4", "Piano 8")."""


def _words(words: list[str] | tuple[str, ...]) -> str:
    return "|".join(re.escape(word) for word in sorted(set(words), key=len, reverse=True))


def _one_word(endings: list[str] | tuple[str, ...]) -> str:
    """A street written as one word with one of ``endings``, then its number ("Jiplaan 79")."""
    return rf"[{UPPER}][\w{APOSTROPHES}-]*(?i:{_words(endings)})\.?[ \t]+{NUMBER}"


_PREFIX = _words([word.capitalize() for word in PREFIXES] + PREFIXES)
DIRECTION = r"(?:N|S|E|W|NE|NW|SE|SW)"
"""A compass point before or after a street's name ("123 N. Main St", "1600 Pennsylvania
Avenue NW")."""


NUMBER = r"\d{1,5}[A-Za-z]?(?:[/-]\d{1,5}[A-Za-z]?)?(?!\w)"
"""A house number: "12", "12a", "5/722", "12-14"."""
UNIT = rf"(?:{_words(UNITS)})\.?\s+[\w-]{{1,6}}"
"""A unit: "Unit 71", "Apt. 4", "Piano 8"."""
_SUFFIXED = (
    rf"(?:{DIRECTION}\.?[ \t]+)?(?:{NAME_WORD}[ \t]+){{1,3}}(?:{_words(SUFFIXES)})s?\b\.?"
    rf"(?:[ \t]+{DIRECTION}\b\.?)?"
)
STREET = pattern(
    rf"(?<![\w+./@{APOSTROPHES}-])(?:"
    rf"(?P<suffixed>(?:{UNIT},?\s+)?{NUMBER},?[ \t]+{_SUFFIXED}|{UNIT},?\s+{_SUFFIXED})"
    rf"|(?:{UNIT},?\s+)?{NUMBER},?[ \t]+(?:{_PREFIX})\.?[ \t]+"
    rf"(?:{NAME_WORD}[ \t]+){{0,3}}{_CAPITAL}"
    rf"|(?:{_PREFIX})\.?[ \t]+(?:{NAME_WORD}[ \t]+){{0,4}}?{_CAPITAL}"
    rf",?[ \t]+(?:n[º°o.]\s*)?(?!\d{{4,5}}\s+[{UPPER}]){NUMBER}"
    rf"|(?:{_PREFIX})\.?[ \t]+(?:{NAME_WORD}[ \t]+){{0,4}}{_CAPITAL}"
    rf"|{_one_word(GERMANIC)}"
    rf"|(?:{_CAPITAL}[ \t]+){{1,2}}(?:Straße|Strasse|Weg|Allee|Platz|Gasse|Ring)[ \t]+{NUMBER}"
    rf")"
)
"""A street, in the layouts of the module's docstring. One with no digit, or with a lower-case
type that is also an English word (:data:`ENGLISH_WORDS`), needs a postcode after it. A number
and name before a street type (``suffixed``) need a postcode or state after them, or words that
introduce an address before them (:data:`INTRODUCED`), as "3 Easy Steps" has that shape too."""
ENGLISH_STREET = pattern(
    rf"(?:{UNIT},?\s+)?(?:{NUMBER},?[ \t]+)?(?:{'|'.join(ENGLISH_WORDS)})\b"
    rf"|{_one_word(ENGLISH_ENDINGS)}$"
)
"""A street that opens with a lower-case :data:`ENGLISH_WORDS` type, or is one word with an
:data:`ENGLISH_ENDINGS` ending and its number."""
INTRODUCING = r"[:;\n(|]|\b(?:to|for|at|from|in|is|address|addr)\b"
"""What ends the clause an address is written after ("... I moved to ", "Address: ")."""
INTRODUCED = pattern(
    rf"(?:^|[,=\[]|{INTRODUCING}|\b(?:on|of|near|was|and|or|lives?|living|moved|located|ship"
    r"|shipped|deliver|delivered|send|sent|visit|visiting)\b)[ \t]*$",
    re.IGNORECASE,
)
"""What may stand right before a street that has nothing after it to show it is one: the start
of a line or field, or a word such as "at", "to", "moved"."""

POSTCODE = (
    r"(?:\d{5}(?:-\d{3,4})?"  # US ZIP (+4), DE, FR, IT, ES, BR "01310-100"
    r"|\d{8}"  # BR, unpunctuated
    r"|\d{4}(?:\s?[A-Z]{2})?"  # NL "1234 AB"; AU, AT, BE, CH, DK
    r"|\d{4}-\d{3}|\d{2}-\d{3}"  # PT, PL
    r"|\d{3} \d{2}"  # SE, CZ, SK "111 43"
    r"|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"  # UK
    r"|[A-Z]\d[A-Z]\s?\d[A-Z]\d"  # CA
    r"|[AC-FHKNPRTV-Y]\d{2}\s?[AC-FHKNPRTV-Y\d]{4}"  # IE eircode
    r")(?!\w)"
)
STATE = r"[A-Z]{2,3}(?!\w)"
"""A state, province or county code: "NSW", "QLD", "NY"."""
REGION = rf"(?:\s*\({STATE}\)|\s*[/-]\s*{STATE}|\s+{STATE}(?:\s+{POSTCODE})?)"
"""What may follow a town: "(RM)", "/ SP", "- SP", "NY 10001"."""
_LAST = rf"(?:{STATE}(?:\s+{POSTCODE})?|{POSTCODE})(?=\s*(?:[,;.!?)\]\n|]|$))"
"""A state or postcode that ends an address."""
ENDS = rf"(?=\s*(?:[,;.!?)\]\n|]|$)|\s+(?:{POSTCODE}|{UNIT}|{TOWN},?\s+{_LAST}))"
"""What may follow a part: the next part, or the end of the address."""
_PART = rf"(?:{UNIT}|{POSTCODE}(?:,?\s+{TOWN})?|{TOWN}(?:\s+{POSTCODE})?|{STATE}){REGION}?"
PART = pattern(rf"{_PART}{ENDS}")
"""A part after a comma or a line break: a unit, a postcode and town, a town, a state."""
_SPACED_PART = rf"(?:{POSTCODE}(?:\s+{TOWN})?|{UNIT}|{TOWN}(?=,?\s+{_LAST})){REGION}?"
SPACED_PART = pattern(rf"{_SPACED_PART}{ENDS}")
"""A part after a space: a postcode or unit ("... Street W84 Y356 Karla Ville"), or a town
only before a state or postcode that ends the address ("... Shore Patriciamouth, LA 55348"),
so "36 Ryan Lane Tom said" has no town."""
BEFORE_WORDS = rf"(?=[ \t]+(?!{PARTICLES}\b)[a-z])"
"""Lower-case words after a part: the sentence goes on ("... Gera 91833 for Hans Scheel")."""
LAST_PART = pattern(rf"(?:{_PART}|{_SPACED_PART}){BEFORE_WORDS}")
"""A part the sentence's words follow, which ends the address; taken only with a postcode."""
GAP = pattern(r"\s*,\s*|\s*\n\s*|\s+")
POSTCODE_WITHIN = pattern(rf"(?<![\w-]){POSTCODE}")
STATE_WITHIN = pattern(rf"\b{STATE}")
MOST_PARTS = 5


def find_addresses(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each postal address in ``text``, in order: a :data:`STREET` and up to
    :data:`MOST_PARTS` parts after it, each after a comma or a line break (:data:`PART`) or a
    space (:data:`SPACED_PART`). A part is taken only where the address can end after it or go
    on (:data:`ENDS`), so the lower-case words of a sentence after an address are no town; a
    capitalised word alone after a comma is ("5 Baker Street, London", and so also "..., John
    Smith"), unless it is a weekday, a month or a greeting (:data:`NOT_TOWNS`)."""
    found: list[tuple[int, int]] = []
    for street in STREET.finditer(text):
        if found and street.start() < found[-1][1]:
            continue
        end, postcode = street.end(), False
        for _ in range(MOST_PARTS):
            gap = GAP.match(text, end)
            if gap is None:
                break
            spaced = "," not in gap.group() and "\n" not in gap.group()
            part = (SPACED_PART if spaced else PART).match(text, gap.end())
            last = part is None
            part = part or LAST_PART.match(text, gap.end())
            has_postcode = part is not None and POSTCODE_WITHIN.search(part.group()) is not None
            if part is None or (last and not has_postcode):
                break
            end = part.end()
            postcode = postcode or has_postcode
            if last:
                break
        if not postcode and (
            not any(c.isdigit() for c in street.group()) or ENGLISH_STREET.match(street.group())
        ):
            continue
        if (
            street.group("suffixed")
            and not (postcode or STATE_WITHIN.search(text, street.end(), end))
            and not INTRODUCED.search(text, max(0, street.start() - 40), street.start())
        ):
            continue
        if text[end - 1] == ".":
            end -= 1  # "5 Oak St." at a sentence's end: the full stop may be the sentence's
        found.append((street.start(), end))
    return found
