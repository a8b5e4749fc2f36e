"""Unit tests for proxy number selection (chimeproxy.domain.selection)."""

from __future__ import annotations

import functools
import itertools
import pickle
import random
from collections.abc import Iterator, Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chimeproxy.domain.selection import (
    NUMBER_CAPABILITIES_FOR,
    Candidate,
    GeoRequirement,
    PoolExhausted,
    SelectionRequest,
    available_in_order,
    covers,
    required_number_capabilities,
    resolve_geo,
    select_proxy_number,
)

A = "+12065550100"
B = "+14015550101"
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in milliseconds
VOICE = frozenset({"InboundCall", "OutboundCall"})
SMS = frozenset({"InboundSMS", "OutboundSMS"})
ALL = VOICE | SMS | {"InboundMMS", "OutboundMMS"}
NO_HISTORY: Mapping[str, int] = {}
EXHAUSTED_PREFIX = "The proxy number pool is exhausted for these participants"


def at(minutes: int) -> int:
    """A fixed instant ``minutes`` after T0, in milliseconds."""
    return T0 + minutes * 60_000


def cand(
    e164: str,
    *,
    country: str | None = "US",
    area_code: str | None = "913",
    capabilities: frozenset[str] = ALL,
    last: int | None = None,
) -> Candidate:
    """A candidate with defaults that pass every filter of ``req()``."""
    return Candidate(e164, country, area_code, frozenset(capabilities), last)


def req(
    *,
    capabilities: Sequence[str] = ("Voice",),
    pool: Sequence[str] = ("US",),
    behavior: str = "PreferSticky",
    geo: GeoRequirement | None = None,
) -> SelectionRequest:
    """A request for participants A and B."""
    return SelectionRequest((A, B), frozenset(capabilities), frozenset(pool), behavior, geo)  # type: ignore[arg-type]


def pick(
    request: SelectionRequest,
    candidates: Sequence[Candidate],
    busy: Sequence[str] = (),
    history: Mapping[str, int] = NO_HISTORY,
) -> str:
    """The chosen number, checked against the head of the full order."""
    chosen = select_proxy_number(request, candidates, busy, history)
    assert available_in_order(request, candidates, busy, history)[0] == chosen
    return chosen.e164


def order(
    request: SelectionRequest,
    candidates: Sequence[Candidate],
    busy: Sequence[str] = (),
    history: Mapping[str, int] = NO_HISTORY,
) -> list[str]:
    """The full order as numbers."""
    return [c.e164 for c in available_in_order(request, candidates, busy, history)]


def exhausted(
    request: SelectionRequest,
    candidates: Sequence[Candidate],
    busy: Sequence[str] = (),
    history: Mapping[str, int] = NO_HISTORY,
) -> PoolExhausted:
    """The PoolExhausted raised by both entry points (they must agree)."""
    with pytest.raises(PoolExhausted) as from_select:
        select_proxy_number(request, candidates, busy, history)
    with pytest.raises(PoolExhausted) as from_order:
        available_in_order(request, candidates, busy, history)
    assert from_select.value.rule == from_order.value.rule
    assert str(from_select.value) == str(from_order.value)
    return from_select.value


# --- resolve_geo -----------------------------------------------------------------------------


class TestResolveGeo:
    def test_no_level_no_params_is_no_requirement(self) -> None:
        assert resolve_geo(None, None, None, "US", "206") is None

    def test_no_level_and_no_participant_facts_is_still_no_requirement(self) -> None:
        assert resolve_geo(None, None, None, None, None) is None

    @pytest.mark.parametrize(("country", "area"), [("US", "206"), ("US", None), (None, "206")])
    def test_params_without_level_are_rejected(self, country: str | None, area: str | None) -> None:
        with pytest.raises(ValueError, match="GeoMatchParams requires GeoMatchLevel"):
            resolve_geo(None, country, area, "US", "206")

    def test_country_from_params_wins_over_participant(self) -> None:
        assert resolve_geo("Country", "CA", "416", "US", "206") == GeoRequirement("Country", "CA")

    def test_country_from_params_ignores_empty_area_code(self) -> None:
        assert resolve_geo("Country", "CA", "", "US", "206") == GeoRequirement("Country", "CA")

    def test_country_from_first_participant_without_params(self) -> None:
        assert resolve_geo("Country", None, None, "US", "206") == GeoRequirement("Country", "US")

    def test_country_from_first_participant_without_area_code(self) -> None:
        assert resolve_geo("Country", None, None, "GB", None) == GeoRequirement("Country", "GB")

    def test_country_level_needs_a_known_participant_country(self) -> None:
        with pytest.raises(ValueError, match=r"needs a country.*first participant"):
            resolve_geo("Country", None, None, None, None)

    def test_country_level_rejects_empty_params_country(self) -> None:
        with pytest.raises(ValueError, match=r"needs a country.*GeoMatchParams"):
            resolve_geo("Country", "", "206", "US", "206")

    def test_area_code_from_params(self) -> None:
        expected = GeoRequirement("AreaCode", "US", "212")
        assert resolve_geo("AreaCode", "US", "212", "US", "206") == expected

    def test_area_code_from_first_participant_without_params(self) -> None:
        expected = GeoRequirement("AreaCode", "US", "206")
        assert resolve_geo("AreaCode", None, None, "US", "206") == expected

    def test_area_code_level_needs_participant_area_code(self) -> None:
        with pytest.raises(ValueError, match=r"needs an area code.*first participant"):
            resolve_geo("AreaCode", None, None, "GB", None)

    def test_area_code_level_needs_participant_country(self) -> None:
        with pytest.raises(ValueError, match=r"needs a country.*first participant"):
            resolve_geo("AreaCode", None, None, None, "206")

    def test_area_code_level_rejects_empty_params_area_code(self) -> None:
        with pytest.raises(ValueError, match=r"needs an area code.*GeoMatchParams"):
            resolve_geo("AreaCode", "US", "", "US", "206")

    def test_partial_params_do_not_borrow_from_participant(self) -> None:
        with pytest.raises(ValueError, match=r"needs an area code.*GeoMatchParams"):
            resolve_geo("AreaCode", "US", None, "US", "206")

    @pytest.mark.parametrize("level", ["", "country", "Region", "AREACODE"])
    def test_unknown_level(self, level: str) -> None:
        with pytest.raises(ValueError, match="GeoMatchLevel must be Country or AreaCode"):
            resolve_geo(level, None, None, "US", "206")


class TestGeoRequirement:
    def test_area_code_level_requires_area_code(self) -> None:
        with pytest.raises(ValueError, match="area code"):
            GeoRequirement("AreaCode", "US")

    def test_unknown_level(self) -> None:
        with pytest.raises(ValueError, match="GeoMatchLevel"):
            GeoRequirement("City", "US")  # type: ignore[arg-type]

    def test_country_level_ignores_area_code(self) -> None:
        geo = GeoRequirement("Country", "US")
        assert geo.matches(cand("+1", area_code="206"))
        assert geo.matches(cand("+1", area_code=None))
        assert not geo.matches(cand("+1", country="CA"))
        assert not geo.matches(cand("+1", country=None))

    def test_area_code_level_needs_both(self) -> None:
        geo = GeoRequirement("AreaCode", "US", "206")
        assert geo.matches(cand("+1", country="US", area_code="206"))
        assert not geo.matches(cand("+1", country="CA", area_code="206"))
        assert not geo.matches(cand("+1", country="US", area_code="212"))
        assert not geo.matches(cand("+1", country="US", area_code=None))


# --- capabilities ----------------------------------------------------------------------------


class TestCovers:
    @pytest.mark.parametrize(
        ("number", "session", "expected"),
        [
            (VOICE, {"Voice"}, True),
            ({"InboundCall"}, {"Voice"}, False),
            ({"OutboundCall"}, {"Voice"}, False),
            (SMS, {"SMS"}, True),
            ({"InboundSMS"}, {"SMS"}, False),
            ({"OutboundSMS"}, {"SMS"}, False),
            (VOICE, {"SMS"}, False),
            (SMS, {"Voice"}, False),
            (VOICE | SMS, {"Voice", "SMS"}, True),
            (VOICE | {"InboundSMS"}, {"Voice", "SMS"}, False),
            (SMS | {"OutboundCall"}, {"Voice", "SMS"}, False),
            (ALL, {"Voice"}, True),
            (frozenset(), {"Voice"}, False),
            ({"InboundMMS", "OutboundMMS"}, {"SMS"}, False),
            (frozenset(), set(), True),
        ],
    )
    def test_table(self, number: set[str], session: set[str], expected: bool) -> None:
        assert covers(frozenset(number), frozenset(session)) is expected

    def test_mapping_matches_contract(self) -> None:
        assert dict(NUMBER_CAPABILITIES_FOR) == {
            "Voice": ("InboundCall", "OutboundCall"),
            "SMS": ("InboundSMS", "OutboundSMS"),
        }

    def test_required_number_capabilities(self) -> None:
        assert required_number_capabilities({"Voice", "SMS"}) == VOICE | SMS
        assert required_number_capabilities(["Voice", "Voice"]) == VOICE

    def test_unknown_session_capability(self) -> None:
        with pytest.raises(ValueError, match="unknown session capability 'MMS'"):
            covers(ALL, frozenset({"MMS"}))


# --- filters ---------------------------------------------------------------------------------


class TestFilters:
    def test_pool_countries(self) -> None:
        candidates = [cand("+14165550100", country="CA"), cand("+19135550199", country="US")]
        assert order(req(pool=["US"]), candidates) == ["+19135550199"]
        assert order(req(pool=["CA"]), candidates) == ["+14165550100"]
        assert order(req(pool=["US", "CA"]), candidates) == ["+14165550100", "+19135550199"]

    def test_unknown_country_is_never_in_pool(self) -> None:
        candidates = [cand("+19135550100", country=None), cand("+19135550199")]
        assert order(req(), candidates) == ["+19135550199"]

    @pytest.mark.parametrize(
        ("session", "expected"),
        [
            (["Voice"], ["+1001", "+1003"]),
            (["SMS"], ["+1002", "+1003"]),
            (["Voice", "SMS"], ["+1003"]),
        ],
    )
    def test_capabilities(self, session: list[str], expected: list[str]) -> None:
        candidates = [
            cand("+1001", capabilities=VOICE),
            cand("+1002", capabilities=SMS),
            cand("+1003", capabilities=VOICE | SMS),
            cand("+1004", capabilities=frozenset({"InboundCall", "InboundSMS"})),
            cand("+1005", capabilities=frozenset({"OutboundCall", "OutboundSMS"})),
        ]
        assert order(req(capabilities=session), candidates) == expected

    def test_geo_country(self) -> None:
        candidates = [
            cand("+14165550100", country="CA", area_code="416"),
            cand("+12125550100", country="US", area_code="212"),
            cand("+19135550100", country="US", area_code=None),
        ]
        geo = GeoRequirement("Country", "US")
        assert order(req(pool=["US", "CA"], geo=geo), candidates) == [
            "+12125550100",
            "+19135550100",
        ]

    def test_geo_area_code_needs_same_country(self) -> None:
        candidates = [
            cand("+12065550100", country="US", area_code="206"),
            cand("+12125550100", country="US", area_code="212"),
            cand("+44206555010", country="GB", area_code="206"),
        ]
        geo = GeoRequirement("AreaCode", "US", "206")
        assert order(req(pool=["US", "GB"], geo=geo), candidates) == ["+12065550100"]

    def test_geo_is_hard_even_when_other_numbers_are_free(self) -> None:
        candidates = [cand("+12125550100", area_code="212")]
        error = exhausted(req(geo=GeoRequirement("AreaCode", "US", "206")), candidates)
        assert error.rule == "geo"

    def test_geo_from_first_participant_end_to_end(self) -> None:
        geo = resolve_geo("AreaCode", None, None, "US", "206")
        candidates = [
            cand("+12125550100", area_code="212"),
            cand("+12065550199", area_code="206", last=at(9)),
        ]
        assert pick(req(geo=geo), candidates) == "+12065550199"

    def test_geo_outside_pool_countries_is_exhausted(self) -> None:
        candidates = [cand("+14165550100", country="CA", area_code="416")]
        error = exhausted(req(pool=["US"], geo=GeoRequirement("Country", "CA")), candidates)
        assert error.rule == "pool_countries"

    @pytest.mark.parametrize(
        "busy",
        [
            pytest.param(["+19135550100"], id="A-active-on-it"),
            pytest.param(["+19135550100"], id="B-active-on-it"),
            pytest.param(["+19135550100", "+19135550100"], id="both-active-on-it"),
            pytest.param({"+19135550100", "+15555550000"}, id="set-with-unknown-number"),
            pytest.param(("+19135550100",), id="tuple"),
        ],
    )
    def test_busy_numbers_are_unavailable(self, busy: Sequence[str]) -> None:
        candidates = [cand("+19135550100"), cand("+19135550101", last=at(5))]
        assert order(req(), candidates, busy) == ["+19135550101"]

    def test_busy_for_a_and_busy_for_b_both_excluded(self) -> None:
        # The store unions A's and B's active proxy numbers into ``busy``.
        a_active = {"+1001"}
        b_active = {"+1002"}
        candidates = [cand("+1001"), cand("+1002"), cand("+1003", last=at(1))]
        assert order(req(), candidates, a_active | b_active) == ["+1003"]
        assert order(req(), candidates, a_active) == ["+1002", "+1003"]
        assert order(req(), candidates, b_active) == ["+1001", "+1003"]

    def test_busy_beats_stickiness(self) -> None:
        candidates = [cand("+1001"), cand("+1002")]
        history = {"+1002": at(1)}
        assert pick(req(), candidates, ["+1002"], history) == "+1001"

    def test_candidates_may_be_a_one_shot_iterator(self) -> None:
        def numbers() -> Iterator[Candidate]:
            yield cand("+1002")
            yield cand("+1001")

        assert select_proxy_number(req(), numbers(), (), NO_HISTORY).e164 == "+1001"
        assert [c.e164 for c in available_in_order(req(), numbers(), (), NO_HISTORY)] == [
            "+1001",
            "+1002",
        ]


# --- general order ---------------------------------------------------------------------------


class TestGeneralOrder:
    def test_least_recently_allocated_first(self) -> None:
        candidates = [
            cand("+1001", last=at(3)),
            cand("+1002", last=at(1)),
            cand("+1003", last=at(2)),
        ]
        assert order(req(), candidates) == ["+1002", "+1003", "+1001"]

    def test_never_allocated_counts_as_oldest(self) -> None:
        candidates = [cand("+1001", last=at(-10_000)), cand("+1009", last=None)]
        assert order(req(), candidates) == ["+1009", "+1001"]

    def test_ties_broken_by_lowest_number(self) -> None:
        candidates = [
            cand("+1003", last=at(1)),
            cand("+1001", last=at(1)),
            cand("+1002", last=at(1)),
        ]
        assert order(req(), candidates) == ["+1001", "+1002", "+1003"]

    def test_never_allocated_ties_broken_by_lowest_number(self) -> None:
        candidates = [cand("+19135550199"), cand("+19135550100"), cand("+19135550150")]
        assert order(req(), candidates) == ["+19135550100", "+19135550150", "+19135550199"]

    def test_lowest_number_is_numeric_not_lexical(self) -> None:
        # Lexically "+1..." < "+4..."; numerically the 10-digit German number is lower.
        de = cand("+4930123456", country="DE")
        us = cand("+12065550100", country="US")
        assert order(req(pool=["US", "DE"]), [us, de]) == ["+4930123456", "+12065550100"]

    def test_lru_outranks_number(self) -> None:
        candidates = [cand("+1001", last=at(2)), cand("+1999", last=at(1))]
        assert pick(req(), candidates) == "+1999"

    def test_mixed_none_and_aware_times_do_not_break(self) -> None:
        candidates = [cand("+1001", last=at(1)), cand("+1002"), cand("+1003", last=at(0))]
        assert order(req(), candidates) == ["+1002", "+1003", "+1001"]

    def test_input_order_does_not_matter(self) -> None:
        candidates = [
            cand("+1001", last=at(1)),
            cand("+1002", last=at(1)),
            cand("+1003"),
            cand("+1004"),
            cand("+1005", last=at(0)),
        ]
        expected = order(req(), candidates)
        for permutation in itertools.permutations(candidates):
            assert order(req(), list(permutation)) == expected
            assert pick(req(), list(permutation)) == expected[0]

    def test_same_input_same_output(self) -> None:
        candidates = [cand(f"+1{n:03d}", last=at(n % 3)) for n in range(50)]
        history = {"+1007": at(1), "+1010": at(2)}
        for behavior in ("PreferSticky", "AvoidSticky"):
            first = order(req(behavior=behavior), candidates, ["+1001"], history)
            assert all(
                order(req(behavior=behavior), candidates, ["+1001"], history) == first
                for _ in range(3)
            )


# --- stickiness ------------------------------------------------------------------------------


class TestPreferSticky:
    def test_returns_the_pair_number_even_if_not_lru(self) -> None:
        candidates = [cand("+1001"), cand("+1002", last=at(50))]
        assert pick(req(), candidates, history={"+1002": at(50)}) == "+1002"

    def test_most_recent_of_the_pair_wins(self) -> None:
        candidates = [cand("+1001"), cand("+1002", last=at(5)), cand("+1003", last=at(9))]
        history = {"+1002": at(5), "+1003": at(9)}
        assert pick(req(), candidates, history=history) == "+1003"
        history = {"+1002": at(10), "+1003": at(9)}
        assert pick(req(), candidates, history=history) == "+1002"

    def test_sticky_first_then_general_order(self) -> None:
        candidates = [
            cand("+1001", last=at(3)),
            cand("+1002", last=at(1)),
            cand("+1003", last=at(7)),
            cand("+1004"),
        ]
        history = {"+1001": at(2), "+1003": at(7)}
        assert order(req(), candidates, history=history) == ["+1003", "+1004", "+1002", "+1001"]

    def test_busy_sticky_falls_to_general_order_not_to_older_sticky(self) -> None:
        candidates = [cand("+1001", last=at(1)), cand("+1002", last=at(2)), cand("+1003")]
        history = {"+1001": at(1), "+1002": at(2)}
        assert pick(req(), candidates, ["+1002"], history) == "+1003"

    @pytest.mark.parametrize(
        "sticky",
        [
            pytest.param(cand("+1009", country="CA"), id="outside-pool"),
            pytest.param(cand("+1009", capabilities=SMS), id="lacks-voice"),
            pytest.param(cand("+1009", area_code="212"), id="other-area-code"),
        ],
    )
    def test_filtered_sticky_falls_to_general_order(self, sticky: Candidate) -> None:
        candidates = [sticky, cand("+1005", last=at(1)), cand("+1006", last=at(2))]
        geo = GeoRequirement("AreaCode", "US", "913")
        assert pick(req(geo=geo), candidates, history={"+1009": at(3)}) == "+1005"

    def test_sticky_no_longer_associated_falls_to_general_order(self) -> None:
        candidates = [cand("+1005", last=at(1)), cand("+1006")]
        assert pick(req(), candidates, history={"+1999": at(3)}) == "+1006"

    def test_tied_most_recent_uses_general_order(self) -> None:
        candidates = [cand("+1001"), cand("+1002", last=at(5)), cand("+1003", last=at(4))]
        history = {"+1002": at(9), "+1003": at(9)}
        assert order(req(), candidates, history=history) == ["+1003", "+1002", "+1001"]

    def test_tied_most_recent_with_one_busy(self) -> None:
        candidates = [cand("+1001"), cand("+1002", last=at(5)), cand("+1003", last=at(4))]
        history = {"+1002": at(9), "+1003": at(9)}
        assert pick(req(), candidates, ["+1003"], history) == "+1002"


class TestAvoidSticky:
    def test_prefers_a_never_used_number(self) -> None:
        candidates = [cand("+1001"), cand("+1002", last=at(9))]
        history = {"+1001": at(1)}
        assert pick(req(behavior="AvoidSticky"), candidates, history=history) == "+1002"

    def test_never_used_in_general_order_then_used(self) -> None:
        candidates = [
            cand("+1001"),
            cand("+1002", last=at(3)),
            cand("+1003", last=at(2)),
            cand("+1004", last=at(8)),
        ]
        history = {"+1001": at(1), "+1004": at(8)}
        expected = ["+1003", "+1002", "+1001", "+1004"]
        assert order(req(behavior="AvoidSticky"), candidates, history=history) == expected

    def test_all_used_falls_back_to_least_recently_used_by_the_pair(self) -> None:
        candidates = [cand("+1001", last=at(1)), cand("+1002", last=at(9)), cand("+1003")]
        history = {"+1001": at(7), "+1002": at(2), "+1003": at(5)}
        assert order(req(behavior="AvoidSticky"), candidates, history=history) == [
            "+1002",
            "+1003",
            "+1001",
        ]

    def test_all_used_ties_in_pair_time_use_general_order(self) -> None:
        candidates = [
            cand("+1001", last=at(4)),
            cand("+1002", last=at(3)),
            cand("+1003", last=at(3)),
        ]
        history = dict.fromkeys(("+1001", "+1002", "+1003"), at(2))
        assert order(req(behavior="AvoidSticky"), candidates, history=history) == [
            "+1002",
            "+1003",
            "+1001",
        ]

    def test_never_used_but_busy_falls_back_to_used(self) -> None:
        candidates = [cand("+1001"), cand("+1002")]
        history = {"+1001": at(1)}
        assert pick(req(behavior="AvoidSticky"), candidates, ["+1002"], history) == "+1001"

    def test_without_history_is_general_order(self) -> None:
        candidates = [cand("+1002"), cand("+1001"), cand("+1000", last=at(1))]
        assert order(req(behavior="AvoidSticky"), candidates) == ["+1001", "+1002", "+1000"]

    def test_unknown_behavior_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="NumberSelectionBehavior"):
            select_proxy_number(req(behavior="Sticky"), [cand("+1001")], (), NO_HISTORY)


# --- exhaustion ------------------------------------------------------------------------------


EXHAUSTION_CASES = [
    pytest.param(req(), [], [], "no_numbers", "no phone numbers are associated", id="no-numbers"),
    pytest.param(
        req(pool=["US"]),
        [cand("+1001", country="CA"), cand("+1002", country=None)],
        [],
        "pool_countries",
        "none of the 2 associated numbers is in the pool countries (US)",
        id="pool",
    ),
    pytest.param(
        req(pool=[]),
        [cand("+1001")],
        [],
        "pool_countries",
        "pool countries (none)",
        id="empty-pool",
    ),
    pytest.param(
        req(capabilities=["Voice", "SMS"]),
        [cand("+1001", capabilities=VOICE), cand("+1002", capabilities=SMS)],
        [],
        "capabilities",
        "none of the 2 numbers in the pool countries can serve SMS, Voice",
        id="capabilities",
    ),
    pytest.param(
        req(geo=GeoRequirement("AreaCode", "US", "206")),
        [cand("+1001", area_code="212")],
        [],
        "geo",
        "matches GeoMatchLevel AreaCode US/206",
        id="geo-area",
    ),
    pytest.param(
        req(pool=["US", "CA"], geo=GeoRequirement("Country", "CA")),
        [cand("+1001")],
        [],
        "geo",
        "matches GeoMatchLevel Country CA",
        id="geo-country",
    ),
    pytest.param(
        req(),
        [cand("+1001"), cand("+1002")],
        ["+1001", "+1002"],
        "busy",
        "all 2 matching numbers are in use by an active session",
        id="busy",
    ),
]


class TestExhaustion:
    @pytest.mark.parametrize(("request_", "candidates", "busy", "rule", "hint"), EXHAUSTION_CASES)
    def test_rule_and_message(
        self,
        request_: SelectionRequest,
        candidates: list[Candidate],
        busy: list[str],
        rule: str,
        hint: str,
    ) -> None:
        error = exhausted(request_, candidates, busy, {"+1001": at(1)})
        assert error.rule == rule
        assert hint in error.reason
        assert str(error).startswith(EXHAUSTED_PREFIX)
        assert hint in str(error)

    @pytest.mark.parametrize(("request_", "candidates", "busy", "rule", "hint"), EXHAUSTION_CASES)
    def test_message_never_contains_participant_numbers(
        self,
        request_: SelectionRequest,
        candidates: list[Candidate],
        busy: list[str],
        rule: str,
        hint: str,
    ) -> None:
        error = exhausted(request_, candidates, busy)
        for participant in (A, B):
            for text in (str(error), error.reason, repr(error.args)):
                assert participant not in text
                assert participant[1:] not in text

    def test_reports_the_rule_that_removed_the_last_candidates(self) -> None:
        # One number fails the pool, another the capabilities: the last to go is capabilities.
        candidates = [cand("+1001", country="CA"), cand("+1002", capabilities=SMS)]
        assert exhausted(req(), candidates).rule == "capabilities"

    def test_busy_counts_only_numbers_passing_the_other_rules(self) -> None:
        candidates = [cand("+1001"), cand("+1002", country="CA"), cand("+1003", capabilities=SMS)]
        error = exhausted(req(), candidates, ["+1001"])
        assert error.rule == "busy"
        assert "all 1 matching numbers" in error.reason

    def test_is_pickleable(self) -> None:
        error = exhausted(req(), [])
        clone = pickle.loads(pickle.dumps(error))
        assert (clone.rule, clone.reason, str(clone)) == (error.rule, error.reason, str(error))

    def test_is_an_exception(self) -> None:
        assert issubclass(PoolExhausted, Exception)


# --- scale -----------------------------------------------------------------------------------


def test_ten_thousand_candidates() -> None:
    rng = random.Random(7)
    candidates = [
        cand(
            f"+1913{n:07d}",
            area_code=rng.choice(["913", "816"]),
            capabilities=rng.choice([VOICE, SMS, ALL]),
            last=None if n % 97 == 0 else at(rng.randrange(100_000)),
        )
        for n in range(10_000)
    ]
    busy = {c.e164 for c in candidates[::3]}
    history = {c.e164: at(n) for n, c in enumerate(candidates[::50])}
    for behavior in ("PreferSticky", "AvoidSticky"):
        request = req(behavior=behavior, geo=GeoRequirement("AreaCode", "US", "913"))
        chosen = select_proxy_number(request, candidates, busy, history)
        ranked = available_in_order(request, candidates, busy, history)
        assert chosen == ranked[0]
        assert ranked == reference_order(request, candidates, busy, history)


# --- properties ------------------------------------------------------------------------------


def reference_filter(
    request: SelectionRequest, candidates: Sequence[Candidate], busy: set[str]
) -> list[Candidate]:
    """The contract's candidate rules, written as plainly as possible."""
    needed: set[str] = set()
    if "Voice" in request.capabilities:
        needed |= {"InboundCall", "OutboundCall"}
    if "SMS" in request.capabilities:
        needed |= {"InboundSMS", "OutboundSMS"}
    kept = []
    for c in candidates:
        if c.country not in request.pool_countries or not needed.issubset(c.capabilities):
            continue
        geo = request.geo
        if geo is not None and c.country != geo.country:
            continue
        if geo is not None and geo.level == "AreaCode" and c.area_code != geo.area_code:
            continue
        if c.e164 not in busy:
            kept.append(c)
    return kept


def _general_cmp(x: Candidate, y: Candidate) -> int:
    """Least recently allocated (None oldest), then numerically lowest."""
    if x.last_allocated_at != y.last_allocated_at:
        if x.last_allocated_at is None:
            return -1
        if y.last_allocated_at is None:
            return 1
        return -1 if x.last_allocated_at < y.last_allocated_at else 1
    return int(x.e164[1:]) - int(y.e164[1:])


def reference_order(
    request: SelectionRequest,
    candidates: Sequence[Candidate],
    busy: set[str],
    history: Mapping[str, int],
) -> list[Candidate]:
    """An independent, slow model of the documented order."""
    general = sorted(
        reference_filter(request, candidates, busy), key=functools.cmp_to_key(_general_cmp)
    )
    if request.behavior == "PreferSticky":
        if not history:
            return general
        latest = max(history.values())
        sticky = [c for c in general if history.get(c.e164) == latest]
        return sticky + [c for c in general if c not in sticky]
    fresh = [c for c in general if c.e164 not in history]
    used = [c for c in general if c.e164 in history]
    used.sort(key=lambda c: history[c.e164])  # stable: general order among equal pair times
    return fresh + used


# Weighted towards values that pass, so that most examples reach the ordering rules.
COUNTRIES = ["US", "US", "US", "US", "CA", "GB"]
AREA_CODES = ["206", "206", "206", "212", "416"]
NUMBER_CAPABILITIES = [ALL, ALL, VOICE | SMS, VOICE, SMS, VOICE | {"InboundSMS"}, frozenset()]
POOLS = [{"US"}, {"US"}, {"US", "CA"}, {"US", "CA", "GB"}, {"US", "CA", "GB"}, {"CA"}, set()]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[SelectionRequest, list[Candidate], set[str], dict[str, int]]:
    """A request with candidates, busy numbers and pair history drawn from small domains."""
    # Two lengths so that numeric and lexical order differ.
    number = st.one_of(
        st.integers(4_930_000_000, 4_930_000_020), st.integers(12_060_000_000, 12_060_000_020)
    ).map(lambda n: f"+{n}")
    instant = st.integers(0, 4).map(at)
    candidate = st.builds(
        Candidate,
        e164=number,
        country=st.sampled_from([*COUNTRIES, None]),
        area_code=st.sampled_from([*AREA_CODES, None]),
        capabilities=st.sampled_from(NUMBER_CAPABILITIES),
        last_allocated_at=st.none() | instant,
    )
    # Drawing the size first avoids Hypothesis' bias towards tiny lists.
    size = draw(st.integers(0, 30))
    candidates = draw(st.lists(candidate, min_size=size, max_size=size, unique_by=lambda c: c.e164))
    numbers = [c.e164 for c in candidates] + ["+19995550000"]
    geo = draw(
        st.sampled_from(
            [
                None,
                None,
                None,
                None,
                GeoRequirement("Country", "US"),
                GeoRequirement("Country", "US"),
                GeoRequirement("Country", "CA"),
                GeoRequirement("AreaCode", "US", "206"),
                GeoRequirement("AreaCode", "US", "206"),
                GeoRequirement("AreaCode", "US", "212"),
                GeoRequirement("AreaCode", "GB", "416"),
            ]
        )
    )
    request = SelectionRequest(
        participants=(A, B),
        capabilities=draw(st.sampled_from([{"Voice"}, {"SMS"}, {"Voice", "SMS"}]).map(frozenset)),
        pool_countries=frozenset(draw(st.sampled_from(POOLS))),
        behavior=draw(st.sampled_from(["PreferSticky", "AvoidSticky"])),
        geo=geo,
    )
    busy = draw(st.sets(st.sampled_from(numbers), max_size=max(1, len(candidates) // 2)))
    history = draw(st.dictionaries(st.sampled_from(numbers), instant))
    return request, candidates, busy, history


Scenario = tuple[SelectionRequest, list[Candidate], set[str], dict[str, int]]

PROPERTY_SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_result_satisfies_every_hard_rule(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    try:
        chosen = select_proxy_number(request, candidates, busy, history)
    except PoolExhausted:
        assert reference_filter(request, candidates, busy) == []
        return
    assert chosen in candidates
    assert chosen.e164 not in busy
    assert chosen.country in request.pool_countries
    assert covers(chosen.capabilities, request.capabilities)
    if request.geo is not None:
        assert request.geo.matches(chosen)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_select_is_head_of_order(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    try:
        ranked = available_in_order(request, candidates, busy, history)
    except PoolExhausted as error:
        with pytest.raises(PoolExhausted) as again:
            select_proxy_number(request, candidates, busy, history)
        assert again.value.rule == error.rule
        return
    assert ranked
    assert select_proxy_number(request, candidates, busy, history) == ranked[0]


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_order_is_permutation_of_filtered(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    expected = reference_filter(request, candidates, busy)
    try:
        ranked = available_in_order(request, candidates, busy, history)
    except PoolExhausted:
        assert expected == []
        return
    assert sorted(ranked, key=lambda c: c.e164) == sorted(expected, key=lambda c: c.e164)


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_order_matches_reference_model(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    if not reference_filter(request, candidates, busy):
        return
    expected = reference_order(request, candidates, busy, history)
    assert available_in_order(request, candidates, busy, history) == expected


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_prefer_sticky_returns_most_recent_when_available(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    if request.behavior != "PreferSticky" or not history:
        return
    available = {c.e164 for c in reference_filter(request, candidates, busy)}
    latest = max(history.values())
    most_recent = {n for n, when in history.items() if when == latest} & available
    if most_recent:
        assert select_proxy_number(request, candidates, busy, history).e164 in most_recent


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_avoid_sticky_uses_fresh_number_when_one_is_available(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    if request.behavior != "AvoidSticky":
        return
    available = reference_filter(request, candidates, busy)
    if any(c.e164 not in history for c in available):
        assert select_proxy_number(request, candidates, busy, history).e164 not in history


@PROPERTY_SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_property_deterministic_whatever_the_input_order(
    scenario: Scenario, rng: random.Random
) -> None:
    request, candidates, busy, history = scenario
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    try:
        expected = available_in_order(request, candidates, busy, history)
    except PoolExhausted as error:
        with pytest.raises(PoolExhausted) as again:
            available_in_order(request, shuffled, list(busy), dict(reversed(history.items())))
        assert str(again.value) == str(error)
        return
    assert (
        available_in_order(request, shuffled, list(busy), dict(reversed(history.items())))
        == expected
    )
    assert select_proxy_number(request, shuffled, busy, history) == expected[0]


@PROPERTY_SETTINGS
@given(scenarios())
def test_property_exhaustion_never_leaks_participants(scenario: Scenario) -> None:
    request, candidates, busy, history = scenario
    try:
        select_proxy_number(request, candidates, busy, history)
    except PoolExhausted as error:
        assert str(error).startswith(EXHAUSTED_PREFIX)
        for participant in request.participants:
            assert participant[1:] not in str(error)
