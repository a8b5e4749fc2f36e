"""The carrier catalog: phone numbers available to order, and SearchAvailablePhoneNumbers over it.

The index and its search live here; the built-in catalog of fictional numbers is
catalog_builtin.py, and the operator's CSV import catalog_csv.py.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from chimeproxy.domain.phone import LOCAL, TOLL_FREE

__all__ = [
    "CAPABILITIES",
    "NUMBER_TYPES",
    "VOICE_AND_SMS",
    "Catalog",
    "CatalogError",
    "CatalogNumber",
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
