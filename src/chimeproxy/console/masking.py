"""Phone numbers as the console shows them: partly masked unless the viewer reveals them, since
support screens are seen over shoulders. Pure."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

_SEPARATOR = re.compile(r"[\s\-.]")
_NANP = re.compile(r"\+1([2-9][0-9]{2})[0-9]{3}([0-9]{4})")


@lru_cache(maxsize=65_536)
def mask(number: str | None) -> str:
    """`+12065550150` -> `+1 206 ***-0150`: the country code, the first group (the area code
    where there is one) and the last four digits stay, every other digit (at least three) is a
    star. A value that is no phone number (an anonymous caller) keeps only its last four
    digits."""
    if not number:
        return ""
    nanp = _NANP.fullmatch(number)
    if nanp:  # the common case, as grouped() would write it, without its cost
        return f"+1 {nanp.group(1)} ***-{nanp.group(2)}"
    return grouped(number)


def grouped(number: str) -> str:
    """`mask` by phonenumbers' grouping of the number in international format."""
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return _stars(number, keep=4)
    formatted = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
    country, _, national = formatted.partition(" ")
    if not national:
        return _stars(number, keep=4)
    separator = _SEPARATOR.search(national)
    digits = sum(c.isdigit() for c in national)
    if separator is None:
        first, gap, rest = national[:3], "", national[3:]
    else:
        first, gap, rest = (
            national[: separator.start()],
            separator.group(),
            national[separator.end() :],
        )
    # At least three digits stay hidden: a short number keeps less of its first group.
    head = min(len(first), max(0, digits - 7))
    if head < len(first):
        first, rest = first[:head], first[head:] + gap + rest
    masked = _stars(rest, keep=4)
    return f"{country} {first} {masked}" if first else f"{country} {masked}"


def _stars(text: str, keep: int) -> str:
    """Every digit but the last `keep` replaced with `*`."""
    total = sum(c.isdigit() for c in text)
    seen = 0
    out = []
    for c in text:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - keep else "*")
        else:
            out.append(c)
    return "".join(out)


def shown(number: str | None, reveal: bool) -> str:
    """The number as a page shows it: whole when revealed, else masked."""
    if not number:
        return ""
    return number if reveal else mask(number)
