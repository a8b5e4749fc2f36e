"""The operator's catalog from CSV (`chimeproxy numbers import`): the numbers it owns at its
carrier, each checked against phonenumbers' facts before anything is stored."""

from __future__ import annotations

import csv
import io
import os
import re
from typing import TextIO

import phonenumbers
from phonenumbers import PhoneNumberType

from chimeproxy.domain.catalog import (
    CAPABILITIES,
    NUMBER_TYPES,
    Catalog,
    CatalogError,
    CatalogNumber,
)
from chimeproxy.domain.phone import TOLL_FREE, InvalidPhoneNumber, normalize_e164, number_facts

_REQUIRED_COLUMNS = ("e164", "country", "type", "capabilities")
_OPTIONAL_COLUMNS = ("city", "state")
_CAPABILITY_BY_FOLDED = {name.casefold(): name for name in CAPABILITIES}
_TYPE_BY_FOLDED = {name.casefold(): name for name in NUMBER_TYPES}
_SUPPORTED_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)
_GEOGRAPHIC_TYPES = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)


def _read_text(source: str | os.PathLike[str] | TextIO) -> str:
    """CSV text from a path, a file object, or the text itself (any str containing a newline)."""
    if isinstance(source, str) and "\n" in source:
        return source
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    return source.read()


def _check_country(e164: str, stated: str, line: int) -> str:
    """The stated country, upper-cased, if phonenumbers agrees the number belongs to it."""
    country = stated.upper()
    if country not in _SUPPORTED_REGIONS:
        raise CatalogError(
            "must be an ISO 3166-1 alpha-2 code phonenumbers knows", line=line, column="country"
        )
    known = number_facts(e164).country
    if known is not None and known != country:
        raise CatalogError(
            f"the number belongs to {known}, not {country}", line=line, column="country"
        )
    calling_code = phonenumbers.parse(e164, None).country_code
    if phonenumbers.country_code_for_region(country) != calling_code:
        raise CatalogError(
            f"the number's country calling code is not {country}'s", line=line, column="country"
        )
    return country


def _check_type(e164: str, stated: str, line: int) -> str:
    """The canonical type name, if phonenumbers does not positively know otherwise."""
    number_type = _TYPE_BY_FOLDED.get(stated.casefold())
    if number_type is None:
        raise CatalogError(f"must be one of {', '.join(NUMBER_TYPES)}", line=line, column="type")
    if number_facts(e164).number_type == TOLL_FREE and number_type != TOLL_FREE:
        raise CatalogError(
            "the number is toll-free, so type must be TollFree", line=line, column="type"
        )
    if number_type == TOLL_FREE:
        number = phonenumbers.parse(e164, None)
        # Only a number phonenumbers validates as geographic/mobile is provably not toll-free.
        if phonenumbers.is_valid_number(number) and (
            phonenumbers.number_type(number) in _GEOGRAPHIC_TYPES
        ):
            raise CatalogError(
                "the number is a geographic or mobile number, so type must be Local",
                line=line,
                column="type",
            )
    return number_type


def _check_capabilities(raw: str, line: int) -> frozenset[str]:
    """The capability set from names joined by '|' or ';'."""
    names = [part.strip() for part in re.split(r"[|;]", raw) if part.strip()]
    if not names:
        raise CatalogError("at least one capability is required", line=line, column="capabilities")
    capabilities = set()
    for name in names:
        canonical = _CAPABILITY_BY_FOLDED.get(name.casefold())
        if canonical is None:
            raise CatalogError(
                f"unknown capability {name!r}; expected names from "
                f"{', '.join(sorted(CAPABILITIES))}",
                line=line,
                column="capabilities",
            )
        capabilities.add(canonical)
    return frozenset(capabilities)


def _calling_code_hint(country: str) -> str:
    region = country.strip().upper()
    code = phonenumbers.country_code_for_region(region) if region in _SUPPORTED_REGIONS else 0
    return f" (+{code} for {region})" if code else ""


def write_catalog_csv(catalog: Catalog, out: TextIO) -> None:
    """The catalog as `load_catalog_csv` reads it (so a listing can be edited and imported)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*_REQUIRED_COLUMNS, *_OPTIONAL_COLUMNS])
    for number in catalog:
        writer.writerow(
            [
                number.e164,
                number.country,
                number.number_type,
                "|".join(sorted(number.capabilities)),
                number.city or "",
                number.state or "",
            ]
        )


def load_catalog_csv(path_or_text: str | os.PathLike[str] | TextIO) -> Catalog:
    """Load an operator's numbers from CSV (header e164,country,type,capabilities[,city,state]).

    ``path_or_text`` is a path, an open text file, or the CSV text itself; the first bad row raises
    CatalogError naming its line, column and the rule it breaks.
    """
    reader = csv.reader(io.StringIO(_read_text(path_or_text).lstrip("\ufeff")))
    header_row = next(reader, None)
    if header_row is None:
        raise CatalogError("the file is empty; expected a header row", line=1)
    header = [name.strip().casefold() for name in header_row]
    for name in header:
        if name not in _REQUIRED_COLUMNS and name not in _OPTIONAL_COLUMNS:
            raise CatalogError(
                f"unknown column; expected {', '.join(_REQUIRED_COLUMNS + _OPTIONAL_COLUMNS)}",
                line=1,
                column=name or "(blank)",
            )
    for name in _REQUIRED_COLUMNS:
        if name not in header:
            raise CatalogError("required column is missing from the header", line=1, column=name)
    if len(set(header)) != len(header):
        raise CatalogError("a column appears more than once in the header", line=1)

    numbers: list[CatalogNumber] = []
    first_seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(field.strip() for field in row):
            continue
        if len(row) != len(header):
            raise CatalogError(f"expected {len(header)} fields, found {len(row)}", line=line)
        fields = {name: value.strip() for name, value in zip(header, row, strict=True)}
        try:
            e164 = normalize_e164(fields["e164"])
        except InvalidPhoneNumber as error:
            raise CatalogError(str(error), line=line, column="e164") from None
        if e164 in first_seen:
            raise CatalogError(
                f"the number is already listed on line {first_seen[e164]}",
                line=line,
                column="e164",
            )
        first_seen[e164] = line
        try:
            country = _check_country(e164, fields["country"], line)
        except CatalogError:
            if fields["e164"].startswith("+"):
                raise
            # Without its '+', a number's first digits are its calling code: a US number
            # written without its 1 reads as Egypt's. Say what the column wants instead.
            raise CatalogError(
                "must be in E.164 form, '+' then the country calling code"
                f"{_calling_code_hint(fields['country'])}, then the number",
                line=line,
                column="e164",
            ) from None
        numbers.append(
            CatalogNumber(
                e164=e164,
                country=country,
                number_type=_check_type(e164, fields["type"], line),
                capabilities=_check_capabilities(fields["capabilities"], line),
                area_code=number_facts(e164).area_code,
                city=fields.get("city") or None,
                state=fields.get("state") or None,
            )
        )
    return Catalog(numbers)
