"""The built-in catalog: fictional numbers only (every NANP area code's 555-0100..0199, and
regulators' drama ranges in GB, AU, DE and FR), so that a fresh install works with no set-up
and never hands out a real number."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import phonenumbers

from chimeproxy.domain.catalog import VOICE_AND_SMS, Catalog, CatalogNumber
from chimeproxy.domain.phone import (
    LOCAL,
    NANP_TOLL_FREE_AREA_CODES,
    TOLL_FREE,
    nanp_area_codes,
    number_facts,
)

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
def builtin_catalog() -> Catalog:
    """Build the built-in catalog; cached so every caller shares one instance."""
    return Catalog(_builtin_numbers())
