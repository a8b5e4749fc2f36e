"""The carrier catalog: phone numbers available to order, and SearchAvailablePhoneNumbers over it.

A fresh install gets a built-in catalog of fictional numbers (NANP 555-01XX and regulators' drama
ranges) so nothing real is ever handed out; operators can load their own numbers from CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TextIO

import phonenumbers
from phonenumbers import PhoneNumberType

from chimeproxy.domain.phone import (
    LOCAL,
    NANP_TOLL_FREE_AREA_CODES,
    TOLL_FREE,
    InvalidPhoneNumber,
    nanp_area_codes,
    normalize_e164,
    number_facts,
)

__all__ = [
    "CAPABILITIES",
    "NUMBER_TYPES",
    "VOICE_AND_SMS",
    "Catalog",
    "CatalogError",
    "CatalogNumber",
    "load_catalog_csv",
]

CAPABILITIES: frozenset[str] = frozenset(
    {"InboundCall", "OutboundCall", "InboundSMS", "OutboundSMS", "InboundMMS", "OutboundMMS"}
)
VOICE_AND_SMS: frozenset[str] = frozenset(
    {"InboundCall", "OutboundCall", "InboundSMS", "OutboundSMS"}
)
NUMBER_TYPES: tuple[str, ...] = (LOCAL, TOLL_FREE)


class CatalogError(ValueError):
    """A catalog that cannot be loaded; names the CSV line and column but never the number."""

    def __init__(self, rule: str, *, line: int | None = None, column: str | None = None) -> None:
        self.rule = rule
        self.line = line
        self.column = column
        where = []
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {rule}" if where else rule)


@dataclass(frozen=True, slots=True)
class CatalogNumber:
    """One orderable number and what SearchAvailablePhoneNumbers can filter it by."""

    e164: str
    country: str
    number_type: str
    capabilities: frozenset[str]
    area_code: str | None
    city: str | None
    state: str | None


def _fold(value: str | None) -> str | None:
    """Case-folded value for case-insensitive city/state matching; None stays None."""
    return None if value is None else value.casefold()


class Catalog:
    """An immutable, e164-ordered set of numbers with indexes for every search filter."""

    def __init__(self, numbers: Iterable[CatalogNumber]) -> None:
        ordered = sorted(numbers, key=lambda n: n.e164)
        self._numbers: tuple[CatalogNumber, ...] = tuple(ordered)
        self._keys: list[str] = [n.e164 for n in ordered]
        self._by_e164: dict[str, CatalogNumber] = dict(zip(self._keys, ordered, strict=True))
        if len(self._by_e164) != len(self._keys):
            raise CatalogError("the catalog lists the same number more than once")
        # Posting lists of positions into `_numbers`; built in order, so each is already sorted.
        postings: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
        countries: defaultdict[str, set[str]] = defaultdict(set)
        for position, number in enumerate(ordered):
            postings["country", number.country].append(position)
            postings["type", number.number_type].append(position)
            if number.area_code is not None:
                postings["area", number.area_code].append(position)
            if number.city is not None:
                postings["city", number.city.casefold()].append(position)
            if number.state is not None:
                postings["state", number.state.casefold()].append(position)
            countries[number.country].add(number.number_type)
        self._postings: dict[tuple[str, str], list[int]] = dict(postings)
        self._countries: dict[str, frozenset[str]] = {
            country: frozenset(types) for country, types in countries.items()
        }

    @classmethod
    def builtin(cls) -> Catalog:
        """The built-in fictional catalog, built once per process."""
        return _builtin_catalog()

    def __len__(self) -> int:
        return len(self._numbers)

    def __iter__(self) -> Iterator[CatalogNumber]:
        return iter(self._numbers)

    def __contains__(self, e164: object) -> bool:
        return e164 in self._by_e164

    def get(self, e164: str) -> CatalogNumber | None:
        """The catalog entry for an exact E.164 string, or None."""
        return self._by_e164.get(e164)

    def countries(self) -> dict[str, set[str]]:
        """Country -> number types ("Local", "TollFree") it has numbers of."""
        return {country: set(types) for country, types in self._countries.items()}

    def search(
        self,
        *,
        country: str | None = None,
        area_code: str | None = None,
        city: str | None = None,
        state: str | None = None,
        toll_free_prefix: str | None = None,
        number_type: str | None = None,
        after: str | None = None,
        limit: int = 100,
        exclude: Callable[[str], bool] | None = None,
    ) -> list[CatalogNumber]:
        """Numbers matching every given filter, in e164 order, strictly after ``after``.

        Numbers for which ``exclude(e164)`` is true are skipped without counting towards ``limit``;
        ``toll_free_prefix`` (e.g. "844") selects TollFree numbers with that area code, and city
        and state compare case-insensitively.
        """
        if limit < 0:
            raise ValueError("limit must not be negative")
        if number_type is not None and number_type not in NUMBER_TYPES:
            raise ValueError(f"number_type must be one of {', '.join(NUMBER_TYPES)}")
        if toll_free_prefix is not None:
            if number_type == LOCAL or (area_code is not None and area_code != toll_free_prefix):
                return []
            number_type, area_code = TOLL_FREE, toll_free_prefix
        country = country.upper() if country is not None else None
        city_key, state_key = _fold(city), _fold(state)

        wanted = [
            ("country", country),
            ("type", number_type),
            ("area", area_code),
            ("city", city_key),
            ("state", state_key),
        ]
        lists: list[Sequence[int]] = []
        for field, value in wanted:
            if value is not None:
                posting = self._postings.get((field, value))
                if posting is None:
                    return []
                lists.append(posting)
        # Walk the shortest posting list and check the other filters per entry; that keeps a
        # narrow search (one area code) from touching the rest of a 45k-number catalog.
        candidates: Sequence[int] = min(lists, key=len) if lists else range(len(self._numbers))
        start = bisect_right(self._keys, after) if after is not None else 0
        index = bisect_left(candidates, start)

        found: list[CatalogNumber] = []
        while len(found) < limit and index < len(candidates):
            number = self._numbers[candidates[index]]
            index += 1
            if (
                (country is None or number.country == country)
                and (number_type is None or number.number_type == number_type)
                and (area_code is None or number.area_code == area_code)
                and (city_key is None or _fold(number.city) == city_key)
                and (state_key is None or _fold(number.state) == state_key)
                and (exclude is None or not exclude(number.e164))
            ):
                found.append(number)
        return found


# --- built-in fictional catalog ------------------------------------------------------------------

# Postal abbreviations for the state/province names phonenumbers' geocoder uses for whole NPAs;
# needed for overlay area codes whose geodata carries only the state name, never "City, ST".
_STATE_ABBREVIATIONS: dict[str, str] = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "Florida": "FL", "Georgia": "GA",
    "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL", "Indiana": "IN", "Iowa": "IA",
    "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA", "Maine": "ME", "Maryland": "MD",
    "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN", "Mississippi": "MS",
    "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV", "New Hampshire": "NH",
    "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY", "North Carolina": "NC",
    "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR", "Pennsylvania": "PA",
    "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD", "Tennessee": "TN",
    "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA", "Washington": "WA",
    "Washington State": "WA", "Washington D.C.": "DC", "West Virginia": "WV",
    "Wisconsin": "WI", "Wyoming": "WY",
    "Alberta": "AB", "British Columbia": "BC", "British Colombia": "BC", "Manitoba": "MB",
    "New Brunswick": "NB", "Newfoundland and Labrador": "NL", "Nova Scotia": "NS",
    "Ontario": "ON", "Prince Edward Island": "PE", "Quebec": "QC", "Saskatchewan": "SK",
    "Northwest Territories": "NT", "Nunavut": "NU", "Yukon": "YT",
}  # fmt: skip

_CITY_STATE_RE = re.compile(r"(.+), ([A-Z]{2})")

# NXX 555, lines 0100-0199: the NANPA range reserved for fiction in every area code.
_NANP_FICTION_LINES = range(100, 200)


@dataclass(frozen=True, slots=True)
class _FictionBlock:
    """A regulator's drama/fiction range: ``prefix`` followed by ``digits`` free digits."""

    country: str
    prefix: str
    digits: int
    count: int = 100


# Only blocks phonenumbers parses to the stated country are listed: Ofcom's Nottingham block
# (0115 4960) and the 01632 pseudo area code fail that, so callers could not order them.
_FICTION_BLOCKS: tuple[_FictionBlock, ...] = (
    # Ofcom drama numbers (GB): geographic blocks and the 0808 157 freephone block.
    _FictionBlock("GB", "+44207946", 4),  # London
    _FictionBlock("GB", "+44121496", 4),  # Birmingham
    _FictionBlock("GB", "+44117496", 4),  # Bristol
    _FictionBlock("GB", "+44292018", 4),  # Cardiff
    _FictionBlock("GB", "+44113496", 4),  # Leeds
    _FictionBlock("GB", "+44161496", 4),  # Manchester
    _FictionBlock("GB", "+44191498", 4),  # Tyneside
    _FictionBlock("GB", "+44289018", 4),  # Belfast
    _FictionBlock("GB", "+44114496", 4),  # Sheffield
    _FictionBlock("GB", "+44141496", 4),  # Glasgow
    _FictionBlock("GB", "+44131496", 4),  # Edinburgh
    _FictionBlock("GB", "+448081570", 3),  # freephone
    # ACMA fictitious numbers (AU): 5550 and 7010 exchanges in each geographic region.
    _FictionBlock("AU", "+6125550", 4),
    _FictionBlock("AU", "+6127010", 4),
    _FictionBlock("AU", "+6135550", 4),
    _FictionBlock("AU", "+6137010", 4),
    _FictionBlock("AU", "+6175550", 4),
    _FictionBlock("AU", "+6177010", 4),
    _FictionBlock("AU", "+6185550", 4),
    _FictionBlock("AU", "+6187010", 4),
    # Bundesnetzagentur Filmrufnummern (DE): 1000-number blocks in five cities.
    _FictionBlock("DE", "+493023125", 3),  # Berlin
    _FictionBlock("DE", "+496990009", 3),  # Frankfurt am Main
    _FictionBlock("DE", "+494066969", 3),  # Hamburg
    _FictionBlock("DE", "+492214710", 3),  # Cologne
    _FictionBlock("DE", "+498999998", 3),  # Munich
    # ARCEP numbers reserved for audiovisual works (FR), geographic zones 01-05.
    _FictionBlock("FR", "+3319900", 4),
    _FictionBlock("FR", "+3326191", 4),
    _FictionBlock("FR", "+3335301", 4),
    _FictionBlock("FR", "+3346571", 4),
    _FictionBlock("FR", "+3353649", 4),
)

# ACMA's individually listed fictitious freephone numbers.
_AU_FICTION_TOLL_FREE: tuple[str, ...] = (
    "+611800160401",
    "+611800975707",
    "+611800975708",
    "+611800975709",
    "+611800975710",
    "+611800975711",
)


PLACES = Path(__file__).with_name("places.json")


@cache
def _places() -> dict[str, Any]:
    """City and state names of the built-in catalog, computed from phonenumbers' geodata by
    `compute_places()` and shipped: loading the geodata itself costs about 100 MB of memory."""
    return json.loads(PLACES.read_text(encoding="utf-8"))


def compute_places() -> dict[str, Any]:
    """What places.json holds, from the geodata (tests/unit/test_catalog.py compares them)."""
    blocks = {}
    for block in _FICTION_BLOCKS:
        first = f"{block.prefix}{0:0{block.digits}d}"
        local = number_facts(first).number_type == LOCAL
        blocks[first] = _block_city(first) if local else None
    return {
        "nanp": {npa: list(place) for npa, place in sorted(_nanp_localities().items())},
        "blocks": dict(sorted(blocks.items())),
    }


def _nanp_localities() -> dict[str, tuple[str | None, str | None]]:
    """NANP area code -> (city, state) where most of its exchanges are, per the geodata."""
    # Imported here: the geodata is ~290k prefixes and only the built-in catalog needs it.
    from phonenumbers.geodata import GEOCODE_DATA

    cities: defaultdict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    whole_npa: dict[str, str] = {}
    for prefix, descriptions in GEOCODE_DATA.items():
        if prefix[0] != "1" or len(prefix) < 4:
            continue
        description = descriptions.get("en")
        if not description:
            continue
        if len(prefix) == 4:
            whole_npa[prefix[1:]] = description
            continue
        match = _CITY_STATE_RE.fullmatch(description)
        if match is not None:
            cities[prefix[1:4]][match.group(1), match.group(2)] += 1

    localities: dict[str, tuple[str | None, str | None]] = {}
    for npa in nanp_area_codes():
        npa_description = whole_npa.get(npa, "")
        if cities[npa]:
            city, state = cities[npa].most_common(1)[0][0]
            localities[npa] = (city, state)
        elif match := _CITY_STATE_RE.fullmatch(npa_description):
            localities[npa] = (match.group(1), match.group(2))
        else:
            localities[npa] = (None, _STATE_ABBREVIATIONS.get(npa_description))
    return localities


def _block_city(e164: str) -> str | None:
    """The geocoder's place name for a number, unless it is just the country or a list of towns."""
    from phonenumbers import geocoder  # loads all geodata; see _nanp_localities

    number = phonenumbers.parse(e164, None)
    description = geocoder.description_for_number(number, "en")
    if not description or "/" in description:
        return None
    if description == geocoder.country_name_for_number(number, "en"):
        return None
    return description


def _builtin_numbers() -> Iterator[CatalogNumber]:
    """Every number of the built-in fictional catalog, NANP first."""
    localities = _places()["nanp"]
    for npa, region in nanp_area_codes().items():
        city, state = localities.get(npa, (None, None))
        for line in _NANP_FICTION_LINES:
            yield CatalogNumber(
                f"+1{npa}555{line:04d}", region, LOCAL, VOICE_AND_SMS, npa, city, state
            )
    for npa in sorted(NANP_TOLL_FREE_AREA_CODES):
        for line in _NANP_FICTION_LINES:
            yield CatalogNumber(
                f"+1{npa}555{line:04d}", "US", TOLL_FREE, VOICE_AND_SMS, npa, None, None
            )
    for block in _FICTION_BLOCKS:
        # Every number in a block shares the facts and place of its first number.
        first = f"{block.prefix}{0:0{block.digits}d}"
        facts = number_facts(first)
        city = _places()["blocks"].get(first)
        for suffix in range(block.count):
            yield CatalogNumber(
                f"{block.prefix}{suffix:0{block.digits}d}",
                block.country,
                facts.number_type,
                VOICE_AND_SMS,
                facts.area_code,
                city,
                None,
            )
    for e164 in _AU_FICTION_TOLL_FREE:
        facts = number_facts(e164)
        yield CatalogNumber(e164, "AU", TOLL_FREE, VOICE_AND_SMS, facts.area_code, None, None)


@cache
def _builtin_catalog() -> Catalog:
    """Build the built-in catalog; cached so every caller shares one instance."""
    return Catalog(_builtin_numbers())


# --- operator CSV ----------------------------------------------------------------------------

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
        numbers.append(
            CatalogNumber(
                e164=e164,
                country=_check_country(e164, fields["country"], line),
                number_type=_check_type(e164, fields["type"], line),
                capabilities=_check_capabilities(fields["capabilities"], line),
                area_code=number_facts(e164).area_code,
                city=fields.get("city") or None,
                state=fields.get("state") or None,
            )
        )
    return Catalog(numbers)
