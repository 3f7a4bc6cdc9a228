"""Postal addresses read by their shape (``specialists/builtin/pii/addresses.py``); ``pii``'s finish
step adding them is tested in ``test_finish.py``."""

from __future__ import annotations

import pytest

from specialists.builtin.pii.addresses import find_addresses


def addresses(text: str) -> list[str]:
    return [text[start:end] for start, end in find_addresses(text)]


@pytest.mark.parametrize(
    ("before", "address", "after"),
    [
        # Number first, a street type after the name, then town, state and postcode parts.
        ("I moved to ", "76 Mills Pocket, West Richardton, SA, 2616", "."),
        ("for ", "Unit 71 360 Blanchard Run, Angelaberg, QLD, 4585", "."),
        ("to ", "5/722 Ryan Round, Matthewtown, NSW, 2619", ".\nAgent: ok"),
        ("Ship to: Ann Lee, ", "0487 Hopkins Mews Suite 123, Port Frank, NE 12345", ". Phone: 1"),
        ("at ", "959 Lee Shore Patriciamouth, LA 55348", ""),
        ("", "Flat 5, Ryan Lane, New Town, AB1 2CD", ""),
        ("", "Flat 49\nCarole Courts\nKieranbury\nCT5Y 0RW", ""),
        ("to ", "67 Farnon Street W84 Y356 Karla Ville", "."),  # an Irish eircode
        ("at ", "87/12 Franklin Rest, St. Alejandroberg, WA, 2619", ""),
        # A street type before the name: French, Italian, Portuguese, Spanish.
        ("for ", "32, boulevard de Cohen, 33539 Aubry-sur-Mer", "."),
        ("", "Via Roma 12, 00100 Roma (RM)", ""),
        ("", "Borgo Gino 5 Piano 8, Sesto Veronica, 08534 Potenza (PZ)", ""),
        ("", "Rua das Flores, 123, Centro, 01310-100 São Paulo / SP", ""),
        ("", "Calle Mayor 5, Piso 3, 28001 Madrid", ""),
        ("", "Cañada Virginia Pintor 82\nHuesca, 35787", ""),
        # One word with a Germanic street word; a Dutch postcode.
        ("I moved to ", "Norahhof 25, 7054 OF, Feerwerd", ".\nAgent"),
        ("", "Karl-Marx-Allee 5, 10243 Berlin", ""),
        ("", "Schlosserplatz 1/1, 62855 Rothenburg ob der Tauber", "."),
        # The sentence goes on after a postcode: the address ends there.
        ("shipped to ", "Binnerplatz 79, Apt 27, Gera 91833", " for Hans Scheel."),
        # A street with no number counts when a postcode follows it.
        ("", "rue Bertin, 31469 Marion", ""),
        # Compass points, a "- SP" state, Swedish postcodes; a lower-case "via" before a postcode.
        ("", "1600 Pennsylvania Avenue NW, Washington, DC 20500", ""),
        ("", "100 Queen St W, Toronto, ON M5H 2N2", ""),
        ("", "123 N. Main St., Springfield, IL 62704", ""),
        ("", "Avenida Paulista, 1578, Bela Vista, São Paulo - SP, 01310-200", ""),
        ("", "Kungsgatan 5, 111 43 Stockholm", ""),
        ("abito in ", "via Roma 12, 00100 Roma", ""),
        ("", "Linda-Gollner-Ring 5, 9083 Gloggnitz", ""),
    ],
)
def test_an_address_is_read_whole(before: str, address: str, after: str) -> None:
    assert addresses(before + address + after) == [address]


@pytest.mark.parametrize(
    ("text", "found"),
    [
        # A town only before a postcode or state, or at the address's end.
        ("I live at 5 Baker Street, Tom said so.", ["5 Baker Street"]),
        ("I live at 5 Baker Street Tom said", ["5 Baker Street"]),
        ("In 2019 we met, and 3 Green Men played.", []),  # no street type after the name
        ("He paid 30 Euro on Main Street.", []),  # no house number
        ("Via Roma is lovely in spring.", []),  # a street with no number and no postcode
        ("Regards, C. Forster\nFlat 45Q", []),  # initials are no street type
        ("send mail to Ann Lee, 5 days ago", []),
        # Words that end in a street word, and street types that are English words, need a
        # postcode after them.
        ("During 2020, I moved to Leeds.", []),
        ("Monitoring 24/7 is included.", []),
        ("I sent it via FedEx 2 days ago.", []),
        ("We held 3 via Zoom calls.", []),
        # A number, name and street type alone need a word that introduces an address.
        ("Follow these 3 Easy Steps", []),
        ("Buy a 3 Day Pass", []),
        ("Top 5 Dog Parks", []),
        ("I live at 5 Baker Street with my wife.", ["5 Baker Street"]),
        # Weekdays, months and greetings after a comma are no town.
        ("See you at 5 Baker Street, Tuesday.", ["5 Baker Street"]),
        ("It is 5 Baker Street, Thanks!", ["5 Baker Street"]),
        ("Order 4411 shipped 5 Oak St.", ["5 Oak St"]),  # the full stop may be the sentence's
        ("ip 10.0.0.5 Main Street", []),  # a number inside a value opens no street
        # Hyphens inside and between words, read in linear time (40 parts once took 10 s).
        ("5 Oak St, " + "A-" * 60 + "A x1", ["5 Oak St"]),
    ],
)
def test_what_is_not_an_address_is_not_read_as_one(text: str, found: list[str]) -> None:
    assert addresses(text) == found
