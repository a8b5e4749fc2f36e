"""Tests for chimeproxy.domain.catalog: the built-in fictional catalog, search and CSV loading."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chimeproxy.domain.catalog import (
    CAPABILITIES,
    VOICE_AND_SMS,
    Catalog,
    CatalogError,
    CatalogNumber,
)
from chimeproxy.domain.catalog_builtin import builtin_catalog
from chimeproxy.domain.catalog_csv import load_catalog_csv
from chimeproxy.domain.phone import NANP_TOLL_FREE_AREA_CODES, nanp_area_codes, number_facts

BUILTIN = builtin_catalog()
NANP_REGIONS = frozenset(phonenumbers.region_codes_for_country_code(1))


def brute_force(
    catalog: Catalog,
    *,
    country: str | None = None,
    area_code: str | None = None,
    city: str | None = None,
    state: str | None = None,
    toll_free_prefix: str | None = None,
    number_type: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[CatalogNumber]:
    """The search contract spelled out as a linear scan."""
    if toll_free_prefix is not None:
        if number_type == "Local" or (area_code is not None and area_code != toll_free_prefix):
            return []
        number_type, area_code = "TollFree", toll_free_prefix
    matches = [
        n
        for n in catalog
        if (country is None or n.country == country.upper())
        and (area_code is None or n.area_code == area_code)
        and (city is None or (n.city is not None and n.city.casefold() == city.casefold()))
        and (state is None or (n.state is not None and n.state.casefold() == state.casefold()))
        and (number_type is None or n.number_type == number_type)
        and (after is None or n.e164 > after)
    ]
    return matches[:limit]


def matches_filters(number: CatalogNumber, filters: dict[str, str | None]) -> bool:
    """Whether one result satisfies every non-None filter of a search."""
    checks = {
        "country": lambda v: number.country == v.upper(),
        "area_code": lambda v: number.area_code == v,
        "city": lambda v: number.city is not None and number.city.casefold() == v.casefold(),
        "state": lambda v: number.state is not None and number.state.casefold() == v.casefold(),
        "toll_free_prefix": lambda v: number.number_type == "TollFree" and number.area_code == v,
        "number_type": lambda v: number.number_type == v,
    }
    return all(checks[key](value) for key, value in filters.items() if value is not None)


# --- built-in catalog ----------------------------------------------------------------------------


def test_builtin_is_cached() -> None:
    assert builtin_catalog() is BUILTIN


def test_every_nanp_area_code_has_at_least_100_numbers() -> None:
    codes = nanp_area_codes()
    assert len(codes) > 400
    for npa, region in codes.items():
        found = BUILTIN.search(country=region, area_code=npa, limit=1000)
        assert len(found) >= 100, npa
        assert all(n.number_type == "Local" for n in found)


@pytest.mark.parametrize("npa", sorted(NANP_TOLL_FREE_AREA_CODES))
def test_every_nanp_toll_free_prefix_has_at_least_100_numbers(npa: str) -> None:
    found = BUILTIN.search(toll_free_prefix=npa, limit=1000)
    assert len(found) >= 100
    assert all(n.number_type == "TollFree" and n.country == "US" for n in found)


def test_at_least_four_other_countries_have_100_numbers() -> None:
    counts = Counter(n.country for n in BUILTIN if n.country not in NANP_REGIONS)
    assert {"GB", "AU", "DE", "FR"} <= {c for c, count in counts.items() if count >= 100}


def test_every_builtin_number_agrees_with_phonenumbers() -> None:
    for n in BUILTIN:
        parsed = phonenumbers.parse(n.e164, None)
        assert phonenumbers.region_code_for_number(parsed) == n.country, n.e164
        facts = number_facts(n.e164)
        assert (facts.country, facts.area_code, facts.number_type) == (
            n.country,
            n.area_code,
            n.number_type,
        ), n.e164


def test_builtin_nanp_numbers_are_all_in_the_fictional_range() -> None:
    # Handing out anything outside 555-0100..0199 could page a real subscriber.
    for n in BUILTIN:
        if n.e164.startswith("+1"):
            assert n.e164[5:9] == "5550" and n.e164[9] == "1", n.e164


def test_builtin_numbers_have_voice_and_sms() -> None:
    assert VOICE_AND_SMS <= CAPABILITIES
    assert all(n.capabilities == VOICE_AND_SMS for n in BUILTIN)


def test_builtin_localities() -> None:
    assert BUILTIN.get("+12065550100") == CatalogNumber(
        "+12065550100", "US", "Local", VOICE_AND_SMS, "206", "Seattle", "WA"
    )
    toronto = BUILTIN.get("+14165550100")
    assert toronto is not None and (toronto.city, toronto.state) == ("Toronto", "ON")
    london = BUILTIN.get("+442079460000")
    assert london is not None and (london.country, london.city) == ("GB", "London")
    berlin = BUILTIN.get("+493023125000")
    assert berlin is not None and berlin.city == "Berlin"
    toll_free = BUILTIN.get("+18005550100")
    assert toll_free is not None and (toll_free.city, toll_free.state) == (None, None)


def test_builtin_states_are_postal_abbreviations() -> None:
    for n in BUILTIN:
        if n.state is not None:
            assert len(n.state) == 2 and n.state.isupper(), n.e164


def test_countries() -> None:
    countries = BUILTIN.countries()
    assert countries["US"] == {"Local", "TollFree"}
    assert countries["GB"] == {"Local", "TollFree"}
    assert countries["AU"] == {"Local", "TollFree"}
    assert countries["DE"] == {"Local"}
    assert countries["CA"] == {"Local"}
    countries["US"].add("Mobile")
    assert BUILTIN.countries()["US"] == {"Local", "TollFree"}


def test_get_and_membership() -> None:
    assert BUILTIN.get("+12065550100") is not None
    assert BUILTIN.get("+12065550200") is None
    assert "+12065550150" in BUILTIN
    assert "+12065551234" not in BUILTIN
    assert len(BUILTIN) == len(list(BUILTIN))
    keys = [n.e164 for n in BUILTIN]
    assert keys == sorted(keys)


# --- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        {"country": "US"},
        {"country": "us"},
        {"country": "GB"},
        {"area_code": "206"},
        {"city": "Seattle"},
        {"city": "SEATTLE"},
        {"state": "wa"},
        {"state": "ON"},
        {"toll_free_prefix": "844"},
        {"number_type": "TollFree"},
        {"number_type": "Local"},
        {"country": "US", "state": "WA", "number_type": "Local"},
        {"country": "CA", "city": "toronto"},
        {"country": "US", "area_code": "212", "city": "New York", "state": "NY"},
        {"country": "US", "toll_free_prefix": "888"},
        {"country": "GB", "number_type": "TollFree"},
        {"country": "AU", "toll_free_prefix": "1800"},
    ],
)
def test_search_filters(filters: dict[str, str]) -> None:
    found = BUILTIN.search(limit=10_000, **filters)
    assert found, filters
    assert all(matches_filters(n, filters) for n in found)
    assert found == brute_force(BUILTIN, limit=10_000, **filters)


@pytest.mark.parametrize(
    "filters",
    [
        {"country": "ZZ"},
        {"area_code": "999"},
        {"city": "Atlantis"},
        {"country": "US", "area_code": "416"},
        {"country": "GB", "state": "WA"},
        {"toll_free_prefix": "844", "number_type": "Local"},
        {"toll_free_prefix": "844", "area_code": "206"},
        {"toll_free_prefix": "206"},
        {"number_type": "TollFree", "area_code": "206"},
    ],
)
def test_search_with_no_matches(filters: dict[str, str]) -> None:
    assert BUILTIN.search(**filters) == []


def test_search_limit() -> None:
    assert len(BUILTIN.search(country="US")) == 100
    assert len(BUILTIN.search(country="US", limit=7)) == 7
    assert BUILTIN.search(country="US", limit=0) == []
    with pytest.raises(ValueError):
        BUILTIN.search(limit=-1)


def test_search_rejects_unknown_number_type() -> None:
    with pytest.raises(ValueError):
        BUILTIN.search(number_type="Mobile")


def test_search_after_is_exclusive_and_needs_not_be_in_the_catalog() -> None:
    first = BUILTIN.search(area_code="206", limit=1)[0]
    assert first.e164 == "+12065550100"
    assert BUILTIN.search(area_code="206", after=first.e164, limit=1)[0].e164 == "+12065550101"
    assert BUILTIN.search(area_code="206", after="+12065550150x", limit=1)[0].e164 == (
        "+12065550151"
    )
    assert BUILTIN.search(area_code="206", after="+2") == []


@pytest.mark.parametrize(
    ("filters", "page_size"),
    [
        ({"country": "US", "state": "WA"}, 37),
        ({"country": "GB"}, 100),
        ({"number_type": "TollFree"}, 99),
        ({"area_code": "416"}, 1),
    ],
)
def test_pagination_has_no_gaps_or_duplicates(filters: dict[str, str], page_size: int) -> None:
    pages: list[list[CatalogNumber]] = []
    after: str | None = None
    while True:
        page = BUILTIN.search(after=after, limit=page_size, **filters)
        if not page:
            break
        assert len(page) <= page_size
        pages.append(page)
        after = page[-1].e164
    seen = [n.e164 for page in pages for n in page]
    assert len(seen) == len(set(seen))
    assert seen == [n.e164 for n in brute_force(BUILTIN, limit=100_000, **filters)]
    assert all(len(page) == page_size for page in pages[:-1])


def test_exclude_skips_numbers_without_shrinking_the_page() -> None:
    ordered = {f"+1206555{line:04d}" for line in range(100, 200, 2)}
    found = BUILTIN.search(area_code="206", limit=30, exclude=ordered.__contains__)
    assert len(found) == 30
    assert not {n.e164 for n in found} & ordered
    assert [n.e164 for n in found] == [f"+1206555{line:04d}" for line in range(101, 161, 2)]


def test_exclude_everything_returns_nothing() -> None:
    assert BUILTIN.search(country="DE", exclude=lambda e164: True) == []


def test_exclude_with_pagination() -> None:
    ordered = {"+12065550101", "+12065550102", "+12065550105"}
    page = BUILTIN.search(
        area_code="206", after="+12065550100", limit=3, exclude=ordered.__contains__
    )
    assert [n.e164 for n in page] == ["+12065550103", "+12065550104", "+12065550106"]


# Values present in the catalog, plus a few that are not, so both hits and misses are explored.
_COUNTRIES = [*sorted(BUILTIN.countries()), "ZZ", "us", "gb"]
_AREA_CODES = [*sorted({n.area_code for n in BUILTIN if n.area_code}), "000"]
_CITIES = [*sorted({n.city for n in BUILTIN if n.city}), "SEATTLE", "nowhere"]
_STATES = [*sorted({n.state for n in BUILTIN if n.state}), "wa", "XX"]
_PREFIXES = [*sorted(NANP_TOLL_FREE_AREA_CODES), "808", "1800", "206", "999"]
_AFTER = (
    st.none() | st.sampled_from([n.e164 for n in BUILTIN]) | st.text("+0123456789", max_size=13)
)

_independent_filters = st.fixed_dictionaries(
    {
        "country": st.none() | st.sampled_from(_COUNTRIES),
        "area_code": st.none() | st.sampled_from(_AREA_CODES),
        "city": st.none() | st.sampled_from(_CITIES),
        "state": st.none() | st.sampled_from(_STATES),
        "toll_free_prefix": st.none() | st.sampled_from(_PREFIXES),
        "number_type": st.none() | st.sampled_from(["Local", "TollFree"]),
    }
)


@st.composite
def _filters_from_a_number(draw: st.DrawFn) -> dict[str, str | None]:
    """Filters taken from one catalog number, so the search is guaranteed at least one hit."""
    number = draw(st.sampled_from(list(BUILTIN)))
    toll_free = number.number_type == "TollFree"
    return {
        "country": draw(st.sampled_from([None, number.country, number.country.lower()])),
        "area_code": None if toll_free else draw(st.sampled_from([None, number.area_code])),
        "city": draw(st.sampled_from([None, number.city, (number.city or "").upper() or None])),
        "state": draw(st.sampled_from([None, number.state])),
        "toll_free_prefix": number.area_code if toll_free and draw(st.booleans()) else None,
        "number_type": draw(st.sampled_from([None, number.number_type])),
    }


@settings(max_examples=150, deadline=None)
@given(
    filters=_independent_filters | _filters_from_a_number(),
    after=_AFTER,
    limit=st.integers(0, 60),
)
def test_search_results_satisfy_their_filters(
    filters: dict[str, str | None], after: str | None, limit: int
) -> None:
    found = BUILTIN.search(after=after, limit=limit, **filters)
    assert len(found) <= limit
    assert all(matches_filters(n, filters) for n in found)
    keys = [n.e164 for n in found]
    assert keys == sorted(set(keys))
    assert after is None or all(key > after for key in keys)
    assert found == brute_force(BUILTIN, after=after, limit=limit, **filters)


# --- Catalog construction ------------------------------------------------------------------------


def test_catalog_sorts_its_input() -> None:
    a = CatalogNumber("+12065550101", "US", "Local", VOICE_AND_SMS, "206", None, None)
    b = CatalogNumber("+12065550100", "US", "Local", VOICE_AND_SMS, "206", None, None)
    assert [n.e164 for n in Catalog([a, b])] == ["+12065550100", "+12065550101"]


def test_catalog_rejects_duplicates_without_naming_the_number() -> None:
    a = CatalogNumber("+12065550101", "US", "Local", VOICE_AND_SMS, "206", None, None)
    with pytest.raises(CatalogError) as caught:
        Catalog([a, a])
    assert "2065550101" not in str(caught.value)


def test_empty_catalog() -> None:
    empty = Catalog([])
    assert len(empty) == 0
    assert empty.search() == []
    assert empty.countries() == {}


# --- load_catalog_csv ----------------------------------------------------------------------------

GOOD_CSV = """\
e164,country,type,capabilities,city,state
+12065550100,US,Local,InboundCall|OutboundCall|InboundSMS|OutboundSMS,Seattle,WA
12065550101,us,local,InboundCall;OutboundCall,,
+18445550100,US,TollFree,InboundCall|OutboundCall|InboundMMS|OutboundMMS,,

+442079460000,GB,Local, inboundcall | outboundcall ,London,
"""


def test_load_good_csv_from_text() -> None:
    catalog = load_catalog_csv(GOOD_CSV)
    assert [n.e164 for n in catalog] == [
        "+12065550100",
        "+12065550101",
        "+18445550100",
        "+442079460000",
    ]
    assert catalog.get("+12065550100") == CatalogNumber(
        "+12065550100", "US", "Local", VOICE_AND_SMS, "206", "Seattle", "WA"
    )
    second = catalog.get("+12065550101")
    assert second == CatalogNumber(
        "+12065550101", "US", "Local", frozenset({"InboundCall", "OutboundCall"}), "206", None, None
    )
    toll_free = catalog.get("+18445550100")
    assert toll_free is not None and toll_free.number_type == "TollFree"
    assert "OutboundMMS" in toll_free.capabilities
    london = catalog.get("+442079460000")
    assert london is not None
    assert (london.area_code, london.city, london.state) == ("20", "London", None)
    assert catalog.search(toll_free_prefix="844") == [toll_free]
    assert catalog.countries() == {"US": {"Local", "TollFree"}, "GB": {"Local"}}


def test_load_csv_from_path_and_file_object(tmp_path: Path) -> None:
    path = tmp_path / "numbers.csv"
    # Spreadsheet exports often start with a byte-order mark and use CRLF line ends.
    path.write_text("\ufeff" + GOOD_CSV.replace("\n", "\r\n"), encoding="utf-8")
    expected = [n.e164 for n in load_catalog_csv(GOOD_CSV)]
    assert [n.e164 for n in load_catalog_csv(path)] == expected
    assert [n.e164 for n in load_catalog_csv(str(path))] == expected
    with path.open(encoding="utf-8-sig", newline="") as handle:
        assert [n.e164 for n in load_catalog_csv(handle)] == expected
    assert [n.e164 for n in load_catalog_csv(io.StringIO(GOOD_CSV))] == expected


def test_load_csv_without_optional_columns() -> None:
    catalog = load_catalog_csv(
        "E164 , Country,TYPE,capabilities\n+14165550100,CA,Local,InboundCall\n"
    )
    number = catalog.get("+14165550100")
    assert number is not None and (number.city, number.state, number.area_code) == (
        None,
        None,
        "416",
    )


def test_load_header_only_csv() -> None:
    assert len(load_catalog_csv("e164,country,type,capabilities\n")) == 0


HEADER = "e164,country,type,capabilities\n"
GOOD_ROW = "+12065550100,US,Local,InboundCall\n"


@pytest.mark.parametrize(
    ("text", "line", "column", "rule"),
    [
        pytest.param(
            HEADER + GOOD_ROW + "+1206555010x,US,Local,InboundCall\n",
            3,
            "e164",
            "E.164",
            id="e164-letters",
        ),
        pytest.param(
            HEADER + "+0206555010,US,Local,InboundCall\n",
            2,
            "e164",
            "E.164",
            id="e164-leading-zero",
        ),
        pytest.param(HEADER + ",US,Local,InboundCall\n", 2, "e164", "E.164", id="e164-empty"),
        pytest.param(
            HEADER + "+99912345678,US,Local,InboundCall\n",
            2,
            "e164",
            "country calling code",
            id="e164-unknown-country-code",
        ),
        pytest.param(
            HEADER + GOOD_ROW + GOOD_ROW, 3, "e164", "already listed on line 2", id="duplicate"
        ),
        pytest.param(
            HEADER + GOOD_ROW + "12065550100,US,Local,InboundCall\n",
            3,
            "e164",
            "already listed",
            id="duplicate-after-normalizing",
        ),
        pytest.param(
            HEADER + "+12065550100,USA,Local,InboundCall\n",
            2,
            "country",
            "ISO 3166",
            id="country-not-alpha2",
        ),
        pytest.param(
            HEADER + "+12065550100,ZZ,Local,InboundCall\n",
            2,
            "country",
            "ISO 3166",
            id="country-unknown",
        ),
        pytest.param(
            HEADER + "+12065550100,CA,Local,InboundCall\n",
            2,
            "country",
            "belongs to US, not CA",
            id="country-mismatch",
        ),
        pytest.param(
            HEADER + "+441632960000,FR,Local,InboundCall\n",
            2,
            "country",
            "calling code",
            id="country-calling-code-mismatch",
        ),
        pytest.param(
            HEADER + "+12065550100,US,Mobile,InboundCall\n",
            2,
            "type",
            "Local, TollFree",
            id="type-unknown",
        ),
        pytest.param(
            HEADER + "+18005550100,US,Local,InboundCall\n",
            2,
            "type",
            "toll-free",
            id="type-local-but-toll-free",
        ),
        pytest.param(
            HEADER + "+12065550100,US,TollFree,InboundCall\n",
            2,
            "type",
            "must be Local",
            id="type-toll-free-but-geographic",
        ),
        pytest.param(
            HEADER + "+12065550100,US,Local,InboundFax\n",
            2,
            "capabilities",
            "unknown capability 'InboundFax'",
            id="capability-unknown",
        ),
        pytest.param(
            HEADER + "+12065550100,US,Local,\n",
            2,
            "capabilities",
            "at least one",
            id="capability-empty",
        ),
        pytest.param(
            HEADER + "+12065550100,US,Local,InboundCall,extra\n",
            2,
            None,
            "expected 4 fields, found 5",
            id="too-many-fields",
        ),
        pytest.param(
            HEADER + "+12065550100,US,Local\n",
            2,
            None,
            "expected 4 fields, found 3",
            id="too-few-fields",
        ),
        pytest.param(
            "e164,country,type\n" + GOOD_ROW, 1, "capabilities", "missing", id="missing-column"
        ),
        pytest.param(
            "e164,country,type,capabilities,notes\n",
            1,
            "notes",
            "unknown column",
            id="unknown-column",
        ),
        pytest.param(
            "e164,country,type,capabilities,city,city\n",
            1,
            None,
            "more than once",
            id="repeated-column",
        ),
        pytest.param("", 1, None, "empty", id="empty-file"),
    ],
)
def test_load_csv_rejects_bad_rows(text: str, line: int, column: str | None, rule: str) -> None:
    with pytest.raises(CatalogError) as caught:
        load_catalog_csv(text if "\n" in text else io.StringIO(text))
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert rule in error.rule
    message = str(error)
    assert message.startswith(f"line {line}")
    if column is not None:
        assert f"column {column}" in message
    # Phone numbers are sensitive: errors point at the row, never repeat the number.
    for digits in ("2065550100", "1206555010", "206555010", "8005550100", "1632960000"):
        assert digits not in message


def test_csv_line_numbers_count_blank_and_quoted_lines() -> None:
    text = HEADER + "\n" + '"+12065550101","US","Local","InboundCall"\n' + "+1206,US,Nope,X\n"
    with pytest.raises(CatalogError) as caught:
        load_catalog_csv(text)
    assert (caught.value.line, caught.value.column) == (4, "type")


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)


def test_shipped_places_are_what_the_geodata_says() -> None:
    """places.json is computed from phonenumbers' geodata (kept out of the server's memory);
    after a phonenumbers upgrade, regenerate it with compute_places()."""
    import json

    from chimeproxy.domain.catalog_builtin import PLACES, compute_places

    assert json.loads(PLACES.read_text(encoding="utf-8")) == compute_places()


def test_a_number_without_plus_or_calling_code_is_told_the_form_not_another_country() -> None:
    # With its calling code but no '+', a number is read as before.
    assert load_catalog_csv(HEADER + "12065550100,US,Local,InboundCall\n").get("+12065550100")
    with pytest.raises(CatalogError) as caught:
        load_catalog_csv(HEADER + "2065550100,US,Local,InboundCall\n")
    assert caught.value.column == "e164"
    assert "E.164 form" in caught.value.rule and "(+1 for US)" in caught.value.rule
    assert "EG" not in str(caught.value) and "2065550100" not in str(caught.value)


def test_no_capability_name_is_part_of_another() -> None:
    """The create's candidate query finds a capability as `capabilities LIKE '%Name%'`
    (store/proxy.py), which is exact only while no name contains another."""
    for name in CAPABILITIES:
        assert [other for other in CAPABILITIES if other != name and name in other] == []
