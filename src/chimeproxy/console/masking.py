"""Phone numbers as the console shows them: partly masked unless the viewer reveals them, since
support screens are seen over shoulders. Pure."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

_SEPARATOR = re.compile(r"[\s\-.]")


def mask(number: str | None) -> str:
    """`+12065550150` -> `+1 206 ***-0150`: the country code, the first group (the area code
    where there is one) and the last four digits stay, every other digit (at least three) is a
    star. A value that is no phone number (an anonymous caller) keeps only its last four
    digits."""
    if not number:
        return ""
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
