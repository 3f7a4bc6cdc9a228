"""Values typed by the column they sit in: delimited lines (CSV, TSV) under a header row.

A CSV export names what each column holds, and a redactor should read that header as a person
would: the cells under "phone" are phone numbers, whatever their layout. Only a header whose
every cell is a short column name counts, and only the lines right below it with as many cells.
"""

from __future__ import annotations

import csv
import re

from specialists.builtin.text import pattern

DELIMITERS = ",;\t|"
COLUMN_NAME = pattern(r"[A-Za-z][A-Za-z0-9_.-]*(?: [A-Za-z0-9_.-]+){0,2}")
"""A column name: up to three words, no sentence punctuation ("full_name", "Date of birth")."""
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
    three values, typed PERSON, EMAIL and PHONE. A cell the line writes only in quotes with
    quotes inside it is left out, as it is not the input's text."""
    lines = text.splitlines()
    found: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        line, index = lines[index], index + 1
        for delimiter in DELIMITERS:
            header = _cells(line, delimiter)
            if len(header) < 2 or not all(COLUMN_NAME.fullmatch(cell) for cell in header):
                continue
            kinds = [TYPE_OF_COLUMN.get(re.sub(r"[^a-z0-9]", "", c.lower())) for c in header]
            if not any(kinds):
                continue
            while index < len(lines):  # the rows, up to one of another width or a new header
                cells = _cells(lines[index], delimiter)
                if len(cells) != len(header) or cells == header:
                    break
                found += [(cell, kind) for cell, kind in zip(cells, kinds, strict=True)
                          if kind and cell and cell in lines[index]]  # fmt: skip
                index += 1
            break
    return found


def _cells(line: str, delimiter: str) -> list[str]:
    """``line``'s cells, unquoted and trimmed; none where it has no ``delimiter`` or is no
    well-formed delimited line."""
    if delimiter not in line:
        return []
    try:
        return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter), [])]
    except csv.Error:
        return []
