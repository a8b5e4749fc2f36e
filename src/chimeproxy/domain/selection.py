"""Proxy number selection for new proxy sessions: pure rules, no I/O.

The store gathers the facts (candidate numbers, numbers busy for the participants,
the pair's history); this module decides which proxy number a session gets.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "NUMBER_CAPABILITIES_FOR",
    "Candidate",
    "Capability",
    "ExhaustionRule",
    "GeoLevel",
    "GeoRequirement",
    "PoolExhausted",
    "SelectionBehavior",
    "SelectionRequest",
    "available_in_order",
    "covers",
    "required_number_capabilities",
    "resolve_geo",
    "select_proxy_number",
]

Capability = Literal["Voice", "SMS"]
GeoLevel = Literal["Country", "AreaCode"]
SelectionBehavior = Literal["PreferSticky", "AvoidSticky"]
ExhaustionRule = Literal["no_numbers", "pool_countries", "capabilities", "geo", "busy"]

NUMBER_CAPABILITIES_FOR: Final[Mapping[str, tuple[str, ...]]] = {
    "Voice": ("InboundCall", "OutboundCall"),
    "SMS": ("InboundSMS", "OutboundSMS"),
}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A phone number associated with the voice connector, as the selection sees it."""

    e164: str
    country: str | None
    area_code: str | None
    capabilities: frozenset[str]
    last_allocated_at: int | None


@dataclass(frozen=True, slots=True)
class GeoRequirement:
    """A hard geographic requirement on the proxy number (country, optionally area code)."""

    level: GeoLevel
    country: str
    area_code: str | None = None
    # Where the country and area code came from when no GeoMatchParams were sent, for messages.
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.level not in ("Country", "AreaCode"):
            raise ValueError(f"unknown GeoMatchLevel {self.level!r}")
        if self.level == "AreaCode" and not self.area_code:
            raise ValueError("GeoMatchLevel AreaCode needs an area code")

    def matches(self, candidate: Candidate) -> bool:
        """Whether the candidate's country (and area code for AreaCode) equal the requirement's."""
        if candidate.country != self.country:
            return False
        return self.level == "Country" or candidate.area_code == self.area_code

    def describe(self) -> str:
        """A short human description, e.g. ``AreaCode US/206``."""
        where = (
            f" (taken from {self.source}, as no GeoMatchParams were sent)" if self.source else ""
        )
        if self.level == "AreaCode":
            return f"AreaCode {self.country}/{self.area_code}{where}"
        return f"Country {self.country}{where}"


@dataclass(frozen=True, slots=True)
class SelectionRequest:
    """What a new session asks of its proxy number."""

    participants: tuple[str, str]
    capabilities: frozenset[str]
    pool_countries: frozenset[str]
    behavior: SelectionBehavior
    geo: GeoRequirement | None


class PoolExhausted(Exception):
    """No proxy number is available for these participants.

    ``rule`` names the filter that removed the last candidates and ``reason`` explains it in
    words; neither the message nor the attributes ever contain a participant's phone number.
    """

    rule: ExhaustionRule
    reason: str

    def __init__(self, rule: ExhaustionRule, reason: str) -> None:
        self.rule = rule
        self.reason = reason
        super().__init__(f"The proxy number pool is exhausted for these participants: {reason}.")

    def __reduce__(self) -> tuple[type[PoolExhausted], tuple[ExhaustionRule, str]]:
        # The default rebuilds from args (the message alone), which this __init__ does not take.
        return (type(self), (self.rule, self.reason))


def resolve_geo(
    level: str | None,
    params_country: str | None,
    params_area_code: str | None,
    first_participant_country: str | None,
    first_participant_area_code: str | None,
) -> GeoRequirement | None:
    """Turn GeoMatchLevel/GeoMatchParams into a requirement, defaulting to the first participant.

    GeoMatchParams count as given when either member is not None; then they alone decide.
    Raises ValueError (a BadRequest for the caller) when params come without a level, the
    level is unknown, or a fact the level needs is empty or unknown.
    """
    has_params = params_country is not None or params_area_code is not None
    if level is None:
        if has_params:
            raise ValueError("GeoMatchParams requires GeoMatchLevel")
        return None
    if level not in ("Country", "AreaCode"):
        raise ValueError(f"GeoMatchLevel must be Country or AreaCode, not {level!r}")

    if has_params:
        country, area_code, source = params_country, params_area_code, "GeoMatchParams"
    else:
        country = first_participant_country
        area_code = first_participant_area_code
        source = "the first participant's number"
    if not country:
        raise ValueError(f"GeoMatchLevel {level} needs a country, but {source} has none")
    derived = None if has_params else source
    if level == "Country":
        return GeoRequirement("Country", country, source=derived)
    if not area_code:
        raise ValueError(f"GeoMatchLevel AreaCode needs an area code, but {source} has none")
    return GeoRequirement("AreaCode", country, area_code, source=derived)


def required_number_capabilities(session_capabilities: Iterable[str]) -> frozenset[str]:
    """The phone number capabilities a session with these capabilities needs.

    Raises ValueError for a session capability other than Voice and SMS.
    """
    needed: set[str] = set()
    for capability in session_capabilities:
        try:
            needed.update(NUMBER_CAPABILITIES_FOR[capability])
        except KeyError:
            raise ValueError(f"unknown session capability {capability!r}") from None
    return frozenset(needed)


def covers(candidate_capabilities: frozenset[str], session_capabilities: frozenset[str]) -> bool:
    """Whether a number with these capabilities can serve a session with these capabilities."""
    return required_number_capabilities(session_capabilities) <= candidate_capabilities


def _number_value(e164: str) -> int:
    """The E.164 number as an integer, so that "lowest number" is numeric, not lexical."""
    return int(e164[1:] if e164.startswith("+") else e164)


_GeneralKey = tuple[bool, int, int, str]
_RankKey = tuple[bool, int, _GeneralKey]


def _general_key(candidate: Candidate) -> _GeneralKey:
    """Least recently allocated first (never allocated before all), then the lowest number.

    The boolean comes first so that None is never compared with an instant; e164 makes the
    order total, hence deterministic whatever the input order.
    """
    last = candidate.last_allocated_at
    return (
        last is not None,
        0 if last is None else last,
        _number_value(candidate.e164),
        candidate.e164,
    )


def _filter(
    request: SelectionRequest, candidates: Iterable[Candidate], busy: Collection[str]
) -> list[Candidate]:
    """The available candidates, in input order; raises PoolExhausted when there is none.

    One pass with counters, so the reason can name the rule that removed the last candidates
    without building a list per rule.
    """
    needed = required_number_capabilities(request.capabilities)
    pool = request.pool_countries
    geo = request.geo
    # A list or tuple would make the membership test O(len(busy)) per candidate.
    busy_set = busy if isinstance(busy, Set) else frozenset(busy)

    total = in_pool = capable = located = 0
    available: list[Candidate] = []
    for candidate in candidates:
        total += 1
        if candidate.country not in pool:
            continue
        in_pool += 1
        if not needed <= candidate.capabilities:
            continue
        capable += 1
        if geo is not None and not geo.matches(candidate):
            continue
        located += 1
        if candidate.e164 in busy_set:
            continue
        available.append(candidate)

    if available:
        return available
    if total == 0:
        raise PoolExhausted(
            "no_numbers", "no phone numbers are associated with the voice connector"
        )
    if in_pool == 0:
        countries = ", ".join(sorted(pool)) or "none"
        raise PoolExhausted(
            "pool_countries",
            f"none of the {total} associated numbers is in the pool countries ({countries})",
        )
    if capable == 0:
        wanted = ", ".join(sorted(request.capabilities))
        raise PoolExhausted(
            "capabilities",
            f"none of the {in_pool} numbers in the pool countries can serve {wanted} "
            f"(needs {', '.join(sorted(needed))})",
        )
    if located == 0:
        assert geo is not None
        raise PoolExhausted(
            "geo",
            f"none of the {capable} numbers with the capabilities matches GeoMatchLevel "
            f"{geo.describe()}",
        )
    raise PoolExhausted(
        "busy",
        f"all {located} matching numbers are in use by an active session of one of these "
        "participants",
    )


def _latest_sticky(pair_history: Mapping[str, int]) -> frozenset[str]:
    """The numbers the pair got most recently (several only on an exact time tie)."""
    if not pair_history:
        return frozenset()
    latest = max(pair_history.values())
    return frozenset(number for number, at in pair_history.items() if at == latest)


def _ranking_key(
    behavior: SelectionBehavior, pair_history: Mapping[str, int]
) -> Callable[[Candidate], _RankKey]:
    """The sort key of a behaviour; one key serves both ``min`` and ``sorted`` so they agree."""
    if behavior not in ("PreferSticky", "AvoidSticky"):
        raise ValueError(
            f"NumberSelectionBehavior must be PreferSticky or AvoidSticky, not {behavior!r}"
        )
    if behavior == "AvoidSticky":

        def avoid_sticky(candidate: Candidate) -> _RankKey:
            used_at = pair_history.get(candidate.e164)
            # Never used sorts first; among used ones, the longest ago first.
            return (used_at is not None, 0 if used_at is None else used_at, _general_key(candidate))

        return avoid_sticky

    sticky = _latest_sticky(pair_history)

    def prefer_sticky(candidate: Candidate) -> _RankKey:
        return (candidate.e164 not in sticky, 0, _general_key(candidate))

    return prefer_sticky


def available_in_order(
    request: SelectionRequest,
    candidates: Iterable[Candidate],
    busy: Collection[str],
    pair_history: Mapping[str, int],
) -> list[Candidate]:
    """Every available candidate, best first, so an allocator can fall back on a conflict.

    PreferSticky: the number the pair got most recently (max of ``pair_history``) first when it
    is available, then all others in general order (least recently allocated, then lowest
    number). AvoidSticky: numbers the pair never got, in general order, then those it got,
    the one it got longest ago first (ties in general order). Raises PoolExhausted.
    """
    available = _filter(request, candidates, busy)
    available.sort(key=_ranking_key(request.behavior, pair_history))
    return available


def select_proxy_number(
    request: SelectionRequest,
    candidates: Iterable[Candidate],
    busy: Collection[str],
    pair_history: Mapping[str, int],
) -> Candidate:
    """The proxy number for a new session: ``available_in_order(...)[0]``, found in O(n).

    ``busy`` holds numbers on which participant A or B has an Open or InProgress session;
    ``pair_history`` maps numbers to the last time this pair (either order) got them.
    Raises PoolExhausted when no candidate is available.
    """
    available = _filter(request, candidates, busy)
    return min(available, key=_ranking_key(request.behavior, pair_history))
