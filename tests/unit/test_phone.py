"""Tests for chimeproxy.domain.phone, with phonenumbers as the oracle where it has an answer."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from chimeproxy.domain.phone import (
    NANP_TOLL_FREE_AREA_CODES,
    InvalidPhoneNumber,
    NumberFacts,
    called_candidates,
    is_valid_for_its_country,
    nanp_area_codes,
    normalize_e164,
    number_facts,
    read_number,
)

# --- normalize_e164 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+12065550100", "+12065550100"),
        ("12065550100", "+12065550100"),
        ("442079460000", "+442079460000"),
        ("+61255500000", "+61255500000"),
        ("+493023125000", "+493023125000"),
    ],
)
def test_normalize_accepts_with_or_without_plus(raw: str, expected: str) -> None:
    assert normalize_e164(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param("+", id="plus-only"),
        pytest.param("+1", id="one-digit"),
        pytest.param("+1206555CALL", id="letters"),
        pytest.param("abcdefghij", id="all-letters"),
        pytest.param("+1234567890123456", id="sixteen-digits"),
        pytest.param("+02065550100", id="leading-zero"),
        pytest.param("02065550100", id="leading-zero-no-plus"),
        pytest.param("+1 206 555 0100", id="spaces"),
        pytest.param("+1-206-555-0100", id="dashes"),
        pytest.param(" +12065550100", id="leading-space"),
        pytest.param("+12065550100\n", id="trailing-newline"),
        pytest.param("++12065550100", id="double-plus"),
        pytest.param("+\u0661\u0662\u0660\u0666\u0665\u0665\u0665", id="arabic-indic-digits"),
        pytest.param("+999123456", id="unassigned-country-code"),
    ],
)
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_e164(raw)


def test_normalize_rejects_non_strings() -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_e164(12065550100)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["+1206555010x", "+99912345678", "+12065550100123456"])
def test_invalid_number_message_does_not_echo_the_number(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        normalize_e164(raw)
    message = str(caught.value)
    assert "E.164" in message
    assert raw.lstrip("+")[:6] not in message
    # The parser's own exception must not ride along in tracebacks either.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_invalid_phone_number_is_a_value_error() -> None:
    assert issubclass(InvalidPhoneNumber, ValueError)


@given(st.text(alphabet="+0123456789", max_size=18))
def test_normalize_agrees_with_the_e164_shape(raw: str) -> None:
    digits = raw.removeprefix("+")
    shaped = digits.isdigit() and 2 <= len(digits) <= 15 and digits[0] != "0" and "+" not in digits
    try:
        normalized = normalize_e164(raw)
    except InvalidPhoneNumber:
        if shaped:
            # Well-shaped input may only fail on an unknown country calling code.
            with pytest.raises(phonenumbers.NumberParseException):
                phonenumbers.parse("+" + digits, None)
    else:
        assert shaped
        assert normalized == "+" + digits
        assert normalize_e164(normalized) == normalized


# --- number_facts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "country", "area_code", "number_type"),
    [
        ("+12065550100", "US", "206", "Local"),
        ("+12065550199", "US", "206", "Local"),
        ("+12125550150", "US", "212", "Local"),
        ("+14165550100", "CA", "416", "Local"),
        ("+16045550100", "CA", "604", "Local"),
        ("+17875550100", "PR", "787", "Local"),
        ("+12425550100", "BS", "242", "Local"),
        ("+18005550100", "US", "800", "TollFree"),
        ("+18445550123", "US", "844", "TollFree"),
        ("+442079460000", "GB", "20", "Local"),
        ("+441614960000", "GB", "161", "Local"),
        ("+448081570000", "GB", "808", "TollFree"),
        ("+61255500000", "AU", "2", "Local"),
        ("+61370100000", "AU", "3", "Local"),
        ("+611800160401", "AU", "1800", "TollFree"),
        ("+493023125000", "DE", "30", "Local"),
        ("+33199000000", "FR", "1", "Local"),
    ],
)
def test_number_facts(e164: str, country: str, area_code: str, number_type: str) -> None:
    assert number_facts(e164) == NumberFacts(e164, country, area_code, number_type)


def test_number_facts_normalizes_its_input() -> None:
    assert number_facts("12065550100").e164 == "+12065550100"


def test_number_facts_rejects_invalid_input() -> None:
    with pytest.raises(InvalidPhoneNumber):
        number_facts("not a number")


def test_number_facts_is_cached() -> None:
    assert number_facts("+12065550142") is number_facts("+12065550142")


@pytest.mark.parametrize("npa", sorted(NANP_TOLL_FREE_AREA_CODES))
def test_every_nanp_toll_free_area_code_is_toll_free(npa: str) -> None:
    for line in ("0100", "0199", "1234"):
        assert number_facts(f"+1{npa}555{line}").number_type == "TollFree"


@pytest.mark.parametrize("region", ["US", "CA", "GB", "AU", "DE", "FR", "PR", "JM", "JP", "BR"])
@pytest.mark.parametrize(
    "kind", [PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE]
)
def test_number_facts_match_phonenumbers_example_numbers(region: str, kind: int) -> None:
    example = phonenumbers.example_number_for_type(region, kind)
    if example is None:
        pytest.skip("phonenumbers has no example of this type for the region")
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    facts = number_facts(e164)
    assert facts.country == phonenumbers.region_code_for_number(example)
    is_toll_free = phonenumbers.number_type(example) == PhoneNumberType.TOLL_FREE
    assert facts.number_type == ("TollFree" if is_toll_free else "Local")
    national = phonenumbers.national_significant_number(example)
    ndc_length = phonenumbers.length_of_national_destination_code(example)
    if example.country_code == 1:
        assert facts.area_code == national[:3]
    elif ndc_length:
        assert facts.area_code == national[:ndc_length]


def test_number_facts_without_a_known_region() -> None:
    # +44 1632 is Ofcom's fictional area code, which phonenumbers does not validate.
    facts = number_facts("+441632960000")
    assert facts.country is None
    assert facts.number_type == "Local"


@given(st.sampled_from(sorted(nanp_area_codes())), st.integers(0, 9999))
def test_nanp_facts_follow_the_area_code(npa: str, line: int) -> None:
    facts = number_facts(f"+1{npa}555{line:04d}")
    assert facts.area_code == npa
    assert facts.country == nanp_area_codes()[npa]
    assert facts.number_type == "Local"


# --- nanp_area_codes -----------------------------------------------------------------------------


def test_nanp_area_codes_known_entries() -> None:
    codes = nanp_area_codes()
    assert codes["206"] == "US"
    assert codes["212"] == "US"
    assert codes["416"] == "CA"
    assert codes["604"] == "CA"
    assert codes["787"] == "PR"
    assert codes["939"] == "PR"
    assert codes["242"] == "BS"
    assert codes["876"] == "JM"
    assert codes["809"] == "DO"
    assert len(codes) > 400


def test_nanp_area_codes_are_geographic_only() -> None:
    codes = nanp_area_codes()
    assert not NANP_TOLL_FREE_AREA_CODES & codes.keys()
    # Premium rate, personal communications and N11 service codes are not places.
    for npa in ("900", "500", "521", "600", "211", "411", "911", "555"):
        assert npa not in codes


def test_nanp_area_codes_agree_with_phonenumbers() -> None:
    nanp_regions = set(phonenumbers.region_codes_for_country_code(1))
    for npa, region in nanp_area_codes().items():
        assert len(npa) == 3
        assert npa[0] in "23456789"
        assert region in nanp_regions
        number = phonenumbers.parse(f"+1{npa}5550100", None)
        assert phonenumbers.region_code_for_number(number) == region


def test_nanp_area_codes_returns_a_copy() -> None:
    codes = nanp_area_codes()
    codes["206"] = "XX"
    assert nanp_area_codes()["206"] == "US"


# Reading numbers as carriers write them.

US_CALLER = "+12065550150"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+12065550150", None, US_CALLER),
        ("2065550150", "US", US_CALLER),  # national: read in the proxy number's country
        ("12065550150", "US", US_CALLER),
        ("+1-206-555-0150", "US", US_CALLER),
        ("(206) 555-0150", "US", US_CALLER),
        ("206.555.0150", "US", US_CALLER),
        ("0012065550150", "US", US_CALLER),  # 00 cannot start a NANP number: international
        ("01112065550150", "US", US_CALLER),
        ("0012065550150", "GB", US_CALLER),
        ("tel:+1-206-555-0150", None, US_CALLER),
        ("tel:2065550150;phone-context=+1", None, US_CALLER),
        ("sip:2065550150;phone-context=+1@carrier.example;user=phone", None, US_CALLER),
        ("sip:+12065550150@carrier.example;user=phone", None, US_CALLER),
        ("<sip:+12065550150@127.0.0.1:5060>", None, US_CALLER),
        ("02079460000", "GB", "+442079460000"),
        ("2065550150", "GB", "+442065550150"),  # read in the country it was sent in
    ],
)
def test_read_number(raw: str, region: str | None, expected: str) -> None:
    assert read_number(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("2065550150", None),  # a national number with no country to read it in
        ("anonymous", "US"),
        ("sip:anonymous@anonymous.invalid", "US"),
        ("", "US"),
        ("unknown", "US"),
        ("+", "US"),
        ("12", "US"),  # not a possible number anywhere
        ("sip:alice@example.com", "US"),
        ("tel:2065550150;phone-context=example.com", None),  # a domain names no country
        (None, "US"),
    ],
)
def test_an_unreadable_number_is_none_never_another_country(
    raw: object, region: str | None
) -> None:
    assert read_number(raw, region) is None


def test_read_number_agrees_with_phonenumbers_on_every_national_us_form() -> None:
    """phonenumbers is the oracle: a national US number reads as its E.164 form."""
    for area in ("206", "415", "913", "312", "617"):
        for line in ("0150", "0199", "2000"):
            national = f"{area}555{line}"
            oracle = phonenumbers.format_number(
                phonenumbers.parse(national, "US"), phonenumbers.PhoneNumberFormat.E164
            )
            assert read_number(national, "US") == oracle


def test_called_candidates_read_a_national_number_in_each_country() -> None:
    assert called_candidates("+19135550100", ["GB"]) == ["+19135550100"]
    assert called_candidates("9135550100", ["US", "GB"]) == ["+19135550100", "+449135550100"]
    assert called_candidates("anonymous", ["US"]) == []


def test_participants_must_be_valid_numbers_of_their_country() -> None:
    assert is_valid_for_its_country("+12065550150")
    assert not is_valid_for_its_country("+3125550180")  # no Dutch number
    assert not is_valid_for_its_country("+10005550180")  # area code 000


def test_why_not_valid_names_the_calling_code_never_the_number() -> None:
    from chimeproxy.domain.phone import why_not_valid

    assert why_not_valid("+12065550150") is None
    assert why_not_valid("+442079460123") is None
    problem = why_not_valid("+2065550123")  # a US number sent without its 1
    assert problem is not None
    assert "+20 (EG)" in problem and "2065550123" not in problem
    assert "+1 (US, " in (why_not_valid("+12065550") or "")
