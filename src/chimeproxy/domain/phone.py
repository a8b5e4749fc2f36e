"""Phone-number facts: E.164 normalization, country, area code and number type.

Everything here is pure and derived from the ``phonenumbers`` metadata, so results only change when
that library is upgraded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumberType
from phonenumbers.phonenumberutil import REGION_CODE_FOR_NON_GEO_ENTITY

__all__ = [
    "NANP_TOLL_FREE_AREA_CODES",
    "InvalidPhoneNumber",
    "NumberFacts",
    "called_candidates",
    "is_country",
    "is_valid_for_its_country",
    "nanp_area_codes",
    "normalize_e164",
    "number_facts",
    "read_number",
    "user_part",
    "why_not_valid",
]

LOCAL = "Local"
TOLL_FREE = "TollFree"

# The toll-free NPAs in service today; other 8XX codes are only reserved for future toll-free use.
NANP_TOLL_FREE_AREA_CODES: frozenset[str] = frozenset(
    {"800", "833", "844", "855", "866", "877", "888"}
)

# ASCII digits only: `\d` would also accept other scripts' digits, which phonenumbers then folds.
_E164_RE = re.compile(r"\+?([1-9][0-9]{1,14})")

_GEOGRAPHIC_TYPES = frozenset(
    {PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)

# The "001" pseudo-region covers non-geographic calling codes (e.g. +800), which have no ISO code.
_NON_GEO_REGION = REGION_CODE_FOR_NON_GEO_ENTITY


class InvalidPhoneNumber(ValueError):
    """A string that is not an E.164 phone number; the message never repeats the number itself."""


@dataclass(frozen=True, slots=True)
class NumberFacts:
    """What phonenumbers' metadata says about one E.164 number."""

    e164: str
    country: str | None
    area_code: str | None
    number_type: str


def normalize_e164(raw: str) -> str:
    """Return ``raw`` as ``+<digits>``, accepting it with or without the leading plus.

    Raises InvalidPhoneNumber unless it is 2-15 ASCII digits (first one 1-9) with a country calling
    code phonenumbers recognises.
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumber("phone number must be a string")
    match = _E164_RE.fullmatch(raw)
    if match is None:
        raise InvalidPhoneNumber(
            "is not a valid E.164 number: expected an optional '+' then 2 to 15 digits, "
            "the first of which is 1-9"
        )
    e164 = "+" + match.group(1)
    try:
        _parsed_e164(e164)
    except NumberParseException:
        # `from None`: the parser's context adds nothing and should not leak into logs.
        raise InvalidPhoneNumber(
            "is not a valid E.164 number: no known country calling code"
        ) from None
    return e164


# A create reads each participant three times (the form, validity, its country and area code):
# parsed once. Read only: phonenumbers' functions never change the number they are given.
@lru_cache(maxsize=4096)
def _parsed_e164(e164: str) -> phonenumbers.PhoneNumber:
    return phonenumbers.parse(e164, None)


def is_country(code: str) -> bool:
    """Whether `code` is an ISO 3166-1 alpha-2 country code phonenumbers has numbers for."""
    return code in phonenumbers.SUPPORTED_REGIONS


def why_not_valid(e164: str) -> str | None:
    """None when phonenumbers takes the E.164 number as a valid number of its country, else what
    is wrong, in words that never repeat the number (`normalize_e164` first)."""
    number = _parsed_e164(e164)
    if phonenumbers.is_valid_number(number):
        return None
    regions = [
        region
        for region in phonenumbers.region_codes_for_country_code(number.country_code)
        if region != _NON_GEO_REGION
    ]
    shown = ", ".join(regions[:3]) + (", ..." if len(regions) > 3 else "")
    where = f"country calling code +{number.country_code}" + (f" ({shown})" if shown else "")
    return (
        f"is not a valid phone number for {where}; give it in E.164 form, '+' then the "
        "country calling code (+1 for the US and Canada), then the number"
    )


@cache
def _nanp_area_codes() -> dict[str, str]:
    """Build the NANP geographic area code -> region map once per process."""
    regions = phonenumbers.region_codes_for_country_code(1)
    # Smaller NANP members (BS, JM, PR, ...) declare their NPAs as leading digits; US and CA don't,
    # so for them we probe representative numbers against their fixed-line/mobile patterns.
    leading: list[tuple[re.Pattern[str], str]] = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region, None)
        if metadata is not None and metadata.leading_digits:
            leading.append((re.compile(metadata.leading_digits), region))

    result: dict[str, str] = {}
    for npa_int in range(200, 1000):
        npa = str(npa_int)
        if npa in NANP_TOLL_FREE_AREA_CODES:
            continue
        # The 555-01XX probe keeps 4-digit leading-digit patterns (DO's "8001") from matching.
        probe = npa + "5550100"
        region = next((r for pattern, r in leading if pattern.match(probe)), None)
        if region is not None:
            result[npa] = region
            continue
        # Probing a second exchange guards against a future metadata release excluding 555.
        for candidate in (probe, npa + "2345678"):
            number = phonenumbers.parse("+1" + candidate, None)
            if phonenumbers.number_type(number) in _GEOGRAPHIC_TYPES:
                found = phonenumbers.region_code_for_number(number)
                if found is not None:
                    result[npa] = found
                    break
    return result


def nanp_area_codes() -> dict[str, str]:
    """Every geographic NANP area code phonenumbers knows, mapped to its region (US, CA, PR...)."""
    return dict(_nanp_area_codes())


def _country(number: phonenumbers.PhoneNumber, national: str) -> str | None:
    """Pick the ISO region for ``number``, falling back on area code or a single-region code."""
    region = phonenumbers.region_code_for_number(number)
    if region is not None and region != _NON_GEO_REGION:
        return region
    if number.country_code == 1:
        return _nanp_area_codes().get(national[:3])
    regions = phonenumbers.region_codes_for_country_code(number.country_code)
    if len(regions) == 1 and regions[0] != _NON_GEO_REGION:
        return regions[0]
    return None


@lru_cache(maxsize=65536)
def number_facts(e164: str) -> NumberFacts:
    """Country, area code and Local/TollFree type for an E.164 number (normalized first).

    Works for numbers phonenumbers deems invalid (e.g. fictional ones), using the number's prefix.
    """
    e164 = normalize_e164(e164)
    number = _parsed_e164(e164)
    national = phonenumbers.national_significant_number(number)
    country = _country(number, national)
    toll_free = phonenumbers.number_type(number) == PhoneNumberType.TOLL_FREE
    area_code: str | None
    if number.country_code == 1:
        area_code = national[:3] if len(national) >= 3 else None
        toll_free = toll_free or area_code in NANP_TOLL_FREE_AREA_CODES
    else:
        ndc_length = phonenumbers.length_of_national_destination_code(number)
        area_code = national[:ndc_length] if ndc_length > 0 else None
    return NumberFacts(
        e164=e164,
        country=country,
        area_code=area_code,
        number_type=TOLL_FREE if toll_free else LOCAL,
    )


# Reading numbers as carriers write them (the data plane).

# Visual separators a number may be written with (RFC 3966 allows -, . and parentheses).
_SEPARATORS = str.maketrans("", "", " -.()\t")
_DIALLABLE = re.compile(r"\+?[0-9]{2,17}")
_CONTEXT = re.compile(r"phone-context=([^;]*)", re.IGNORECASE)


def user_part(raw: str) -> str:
    """The user part of a `sip:`/`sips:`/`tel:` URI (parameters of the user part kept), or the
    text itself when it is no URI."""
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    scheme, colon, rest = text.partition(":")
    if colon and scheme.lower() in ("sip", "sips", "tel"):
        text = rest
        if scheme.lower() != "tel":
            text = text.split("@", 1)[0]
    return text


def read_number(raw: object, region: str | None) -> str | None:
    """A number as a carrier or a provider wrote it, in E.164, or None when it cannot be read
    (anonymous, not a number): such a caller is a stranger, never another country's number.

    Reads `+E.164`, national numbers and international-prefix forms (`00`, `011`, ...) in
    `region` (ISO 3166 code; the proxy number's country), visual separators, `sip:`, `sips:` and
    `tel:` URIs, and a `phone-context` that names a country code (`;phone-context=+1`)."""
    if not isinstance(raw, str):
        return None
    text = user_part(raw)
    number, _, parameters = text.partition(";")
    number = number.translate(_SEPARATORS)
    context = _CONTEXT.search(parameters)
    if context and not number.startswith("+"):
        prefix = context.group(1).translate(_SEPARATORS)
        if prefix.startswith("+") and prefix[1:].isdigit():
            number = prefix + number
    if not _DIALLABLE.fullmatch(number):
        return None
    found = _parsed(number, None if number.startswith("+") else region)
    if found is None and number.startswith("00"):
        # 00 is the international prefix almost everywhere; where it is not (011 in NANP), no
        # national number starts with it either, so it can only mean the same.
        found = _parsed("+" + number[2:], None)
    return found


# Pure, and on the routing decision's path twice per call or text (caller and called): a
# carrier's callers and proxy numbers repeat, and parsing took 60 µs per route. Room for the
# participants and numbers of 20,000 live sessions (about 12 MiB): an LRU that is a little too
# small for a working set that cycles keeps nothing.
@lru_cache(maxsize=65536)
def _parsed(number: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(number, region)
    except NumberParseException:
        return None  # no region to read a national number in, or no known country code
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def called_candidates(raw: object, regions: Iterable[str]) -> list[str]:
    """The E.164 numbers a dialled number may be: itself when it is written internationally,
    else its reading in each of `regions` (the countries proxy numbers are in)."""
    international = read_number(raw, None)
    if international is not None:
        return [international]
    return list(dict.fromkeys(n for r in regions if (n := read_number(raw, r)) is not None))


def is_valid_for_its_country(e164: str) -> bool:
    """Whether phonenumbers' metadata says the number exists in its country's numbering plan
    (a participant must be a real number: `+3125550180` is not a Dutch number)."""
    try:
        return why_not_valid(e164) is None
    except NumberParseException:
        return False
