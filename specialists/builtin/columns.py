"""Values typed by the column they sit in: delimited lines (CSV, TSV) under a header row.

A CSV export names what each column holds, and a redactor should read that header as a person
would: the cells under "phone" are phone numbers, whatever their layout. Only a header whose
every cell is a short column name counts, and only the lines right below it with as many cells.
"""

from __future__ import annotations

import csv
import re

DELIMITERS = ",;\t|"
COLUMN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9 _.-]{0,29}")
COLUMN_TYPES = {
    "PERSON": ("name", "fullname", "firstname", "lastname", "surname", "givenname", "person",
               "customer", "customername", "holder", "accountholder", "cardholder", "patient"),
    "EMAIL": ("email", "emailaddress", "mail", "useremail"),
    "PHONE": ("phone", "phonenumber", "tel", "telephone", "mobile", "cell", "cellphone", "fax"),
    "ADDRESS": ("address", "streetaddress", "street", "addr", "homeaddress", "postaladdress"),
    "DATE_OF_BIRTH": ("dob", "dateofbirth", "birthdate", "birthday", "born"),
    "SSN": ("ssn", "socialsecuritynumber"),
    "IBAN": ("iban",),
    "CREDIT_CARD": ("card", "cardnumber", "creditcard", "ccnumber"),
    "IP_ADDRESS": ("ip", "ipaddress", "clientip", "sourceip", "srcip"),
}  # fmt: skip
"""Column names, lower-cased without separators, and the type of PII their cells hold."""
TYPE_OF_COLUMN = {name: kind for kind, names in COLUMN_TYPES.items() for name in names}


def typed_cells(text: str) -> list[tuple[str, str]]:
    """The non-empty cells of ``text``'s delimited lines whose header names a PII column, as
    (value, type), in order: "name,email,phone" over "Ann Lee,ann@x.io,0325.1775" gives the
    three values, typed PERSON, EMAIL and PHONE."""
    lines = text.split("\n")
    found: list[tuple[str, str]] = []
    for index, line in enumerate(lines):
        for delimiter in DELIMITERS:
            header = _cells(line, delimiter)
            if len(header) < 2 or not all(COLUMN_NAME.fullmatch(cell) for cell in header):
                continue
            kinds = [TYPE_OF_COLUMN.get(re.sub(r"[^a-z0-9]", "", c.lower())) for c in header]
            if not any(kinds):
                continue
            for row in lines[index + 1 :]:
                cells = _cells(row, delimiter)
                if len(cells) != len(header):
                    break
                found += [(cell, kind) for cell, kind in zip(cells, kinds, strict=True)
                          if kind and cell]  # fmt: skip
            break
    return found


def _cells(line: str, delimiter: str) -> list[str]:
    if delimiter not in line:
        return []
    return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter), [])]
