"""`chimeproxy numbers import`: an operator's own numbers replace the built-in catalog, also for a
server that is already running."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chimeproxy.testing import ChimeProxyServer
from tests.conftest import database_url, make_client

HEADER = "e164,country,type,capabilities,city,state"
VOICE = "InboundCall|OutboundCall"
EVERYTHING = "InboundCall|OutboundCall|InboundSMS|OutboundSMS"
CATALOG_ROWS = [
    f"+12065550123,US,Local,{EVERYTHING},Seattle,WA",
    f"+12065550124,US,Local,{VOICE},Seattle,WA",
    f"+13125550177,us,local,{EVERYTHING},Chicago,IL",
    f"+18885550123,US,TollFree,{EVERYTHING},,",
    f"+442079460123,GB,Local,{VOICE},London,",
]
US_NUMBERS = ["+12065550123", "+12065550124", "+13125550177", "+18885550123"]


def numbers_command(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line, as an operator would: `chimeproxy numbers ARGS`."""
    return subprocess.run(
        [sys.executable, "-m", "chimeproxy.cli", "numbers", *args, "--database", database],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


def run_import(csv_path: Path, database: str, *options: str) -> subprocess.CompletedProcess[str]:
    return numbers_command(database, "import", str(csv_path), *options)


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def search_everything(client: Any, **filters: Any) -> list[str]:
    """Every number the search offers for `filters`, following NextToken."""
    found: list[str] = []
    token: str | None = None
    while True:
        page = client.search_available_phone_numbers(
            MaxResults=500, **filters, **({"NextToken": token} if token else {})
        )
        found += page["E164PhoneNumbers"]
        token = page.get("NextToken")
        if not token:
            return found


def own_server(directory: Path) -> Iterator[ChimeProxyServer]:
    server = ChimeProxyServer(database=database_url(directory), log_path=directory / "server.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ChimeProxyServer]:
    """A server of this test's own, started before any import (so on the built-in catalog)."""
    yield from own_server(tmp_path)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChimeProxyServer]:
    """A server the other tests share; each imports the catalog it needs first."""
    yield from own_server(tmp_path_factory.mktemp("import"))


def test_running_server_offers_exactly_the_imported_numbers(
    fresh: ChimeProxyServer, tmp_path: Path
) -> None:
    running = fresh
    client = make_client(running.url)
    builtin = client.search_available_phone_numbers(Country="US", AreaCode="206", MaxResults=5)
    assert builtin["E164PhoneNumbers"][0] == "+12065550100"

    result = run_import(write_csv(tmp_path / "numbers.csv", CATALOG_ROWS), running.database)
    assert result.returncode == 0, result.stderr
    assert "5" in result.stdout

    assert search_everything(client, Country="US") == US_NUMBERS
    assert search_everything(client, Country="GB") == ["+442079460123"]
    assert search_everything(client, Country="US", AreaCode="206") == US_NUMBERS[:2]
    assert search_everything(client, Country="US", City="chicago", State="IL") == ["+13125550177"]
    assert search_everything(client, TollFreePrefix="888") == ["+18885550123"]
    assert search_everything(client, Country="US", PhoneNumberType="Local") == US_NUMBERS[:3]
    assert search_everything(client, Country="FR") == []
    countries = {
        c["CountryCode"]: sorted(c["SupportedPhoneNumberTypes"])
        for c in client.list_supported_phone_number_countries(ProductType="VoiceConnector")[
            "PhoneNumberCountries"
        ]
    }
    assert countries == {"US": ["Local", "TollFree"], "GB": ["Local"]}

    order = client.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=["+12065550124", "+12065550100"]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Partial"
    assert order["OrderedPhoneNumbers"] == [
        {"E164PhoneNumber": "+12065550124", "Status": "Acquired"},
        {"E164PhoneNumber": "+12065550100", "Status": "Failed"},
    ]
    owned = client.get_phone_number(PhoneNumberId="+12065550124")["PhoneNumber"]
    assert owned["Status"] == "Unassigned"
    assert owned["Capabilities"]["InboundCall"] is True
    assert owned["Capabilities"]["InboundSMS"] is False
    assert search_everything(client, Country="US") == [n for n in US_NUMBERS if n != "+12065550124"]

    # A later import replaces the catalog; numbers already owned stay owned and unoffered.
    again = write_csv(
        tmp_path / "again.csv",
        [f"+12065550124,US,Local,{VOICE},,", f"+14155550111,US,Local,{VOICE},,"],
    )
    assert run_import(again, running.database).returncode == 0
    assert search_everything(client, Country="US") == ["+14155550111"]
    assert client.get_phone_number(PhoneNumberId="+12065550124")["PhoneNumber"]["Status"] == (
        "Unassigned"
    )


def test_imported_toll_free_number_is_ordered_as_toll_free(
    running: ChimeProxyServer, tmp_path: Path
) -> None:
    assert run_import(write_csv(tmp_path / "n.csv", CATALOG_ROWS), running.database).returncode == 0
    client = make_client(running.url)
    order = client.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=["+18885550123", "+442079460123"]
    )["PhoneNumberOrder"]
    assert order["Status"] == "Successful"
    toll_free = client.get_phone_number(PhoneNumberId="+18885550123")["PhoneNumber"]
    assert (toll_free["Country"], toll_free["Type"]) == ("US", "TollFree")
    british = client.get_phone_number(PhoneNumberId="+442079460123")["PhoneNumber"]
    assert (british["Country"], british["Type"]) == ("GB", "Local")
    assert british["Capabilities"]["OutboundSMS"] is False


@pytest.mark.parametrize(
    ("bad_row", "column"),
    [
        (f"+1206555012x,US,Local,{VOICE},,", "e164"),
        (f"+12065550125,XX,Local,{VOICE},,", "country"),
        (f"+12065550125,US,Mobile,{VOICE},,", "type"),
        (f"2065550125,US,Local,{VOICE},,", "e164"),  # without +1: "+1 for US", not EG
        ("+12065550125,US,Local,Teleport,,", "capabilities"),
        (f"+12065550123,US,Local,{VOICE},,", "e164"),  # a repeat of line 2
        ("+12065550125,US,Local", None),  # too few fields
    ],
)
def test_bad_row_fails_naming_its_line_and_keeps_the_catalog(
    running: ChimeProxyServer, tmp_path: Path, bad_row: str, column: str | None
) -> None:
    good = write_csv(tmp_path / "good.csv", CATALOG_ROWS[:2])
    assert run_import(good, running.database).returncode == 0
    bad = write_csv(tmp_path / "bad.csv", [CATALOG_ROWS[0], CATALOG_ROWS[2], bad_row])
    result = run_import(bad, running.database)
    assert result.returncode != 0
    assert "line 4" in result.stderr
    if column is not None:
        assert column in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing of the bad file was taken.
    assert search_everything(make_client(running.url), Country="US") == US_NUMBERS[:2]


def test_bad_header_and_missing_file_fail_cleanly(
    running: ChimeProxyServer, tmp_path: Path
) -> None:
    good = write_csv(tmp_path / "good.csv", CATALOG_ROWS[:2])
    assert run_import(good, running.database).returncode == 0
    result = run_import(
        write_csv(tmp_path / "h.csv", ["+12065550123,US,Local"], header="e164,country,type"),
        running.database,
    )
    assert result.returncode != 0
    assert "line 1" in result.stderr
    assert "capabilities" in result.stderr
    result = run_import(tmp_path / "nowhere.csv", running.database)
    assert result.returncode != 0
    assert "nowhere.csv" in result.stderr
    assert "Traceback" not in result.stderr
    # The catalog imported before is still in force.
    assert search_everything(make_client(running.url), Country="US") == US_NUMBERS[:2]


def test_import_into_a_new_database_before_the_first_start(tmp_path: Path) -> None:
    database = database_url(tmp_path)
    result = run_import(write_csv(tmp_path / "n.csv", CATALOG_ROWS), database)
    assert result.returncode == 0, result.stderr
    server = ChimeProxyServer(database=database, log_path=tmp_path / "server.log").start()
    try:
        client = make_client(server.url)
        assert search_everything(client, Country="US") == US_NUMBERS
    finally:
        server.stop()


def test_an_empty_import_offers_no_numbers_rather_than_the_fictional_ones(
    fresh: ChimeProxyServer, tmp_path: Path
) -> None:
    client = make_client(fresh.url)
    assert search_everything(client, Country="US", AreaCode="206")
    assert run_import(write_csv(tmp_path / "none.csv", []), fresh.database).returncode == 0
    assert search_everything(client, Country="US", AreaCode="206") == []
    assert (
        client.list_supported_phone_number_countries(ProductType="VoiceConnector")[
            "PhoneNumberCountries"
        ]
        == []
    )


def test_a_file_that_is_not_utf8_fails_without_a_traceback(
    running: ChimeProxyServer, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(HEADER.encode() + b"\n+12065550123,US,Local,InboundCall,S\xe9attle,WA\n")
    result = run_import(path, running.database)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_a_number_without_its_plus_is_told_the_form_not_another_country(
    running: ChimeProxyServer, tmp_path: Path
) -> None:
    result = run_import(
        write_csv(tmp_path / "n.csv", [f"2065550123,US,Local,{VOICE},,"]), running.database
    )
    assert result.returncode != 0
    assert "line 2, column e164: must be in E.164 form" in result.stderr
    assert "(+1 for US)" in result.stderr
    assert "EG" not in result.stderr and "2065550123" not in result.stderr


def test_add_to_the_built_in_catalog_list_it_and_reset_it(
    fresh: ChimeProxyServer, tmp_path: Path
) -> None:
    """`--add` keeps what is on offer and adds the file's numbers; `list` shows the catalog in
    force in the import format; `reset` goes back to the built-in catalog."""
    client = make_client(fresh.url)
    builtin_206 = search_everything(client, Country="US", AreaCode="206")
    assert len(builtin_206) == 100 and "+12065550123" in builtin_206

    mine = [f"+14155550111,US,Local,{VOICE},San Francisco,CA", CATALOG_ROWS[4]]
    added = run_import(write_csv(tmp_path / "add.csv", mine), fresh.database, "--add")
    assert added.returncode == 0, added.stderr
    assert "added 2 numbers and updated 0" in added.stdout
    assert "the built-in fictional ones are in force" in added.stderr
    assert search_everything(client, Country="US", AreaCode="206") == builtin_206
    assert "+14155550111" in search_everything(client, Country="US", AreaCode="415")
    assert "+442079460123" in search_everything(client, Country="GB")

    listed = numbers_command(fresh.database, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == HEADER
    assert "+14155550111,US,Local,InboundCall|OutboundCall,San Francisco,CA" in lines
    assert len(lines) > 40_000  # the built-in numbers too
    # The listing is the import format: the 206 numbers imported back offer the same numbers.
    rows_206 = [line for line in lines if line.startswith("+1206")]
    (tmp_path / "listed.csv").write_text("\n".join([lines[0], *rows_206]) + "\n")

    # Adding again updates a number already added, and adds to the imported numbers.
    again = run_import(
        write_csv(tmp_path / "again.csv", [f"+14155550111,US,Local,{EVERYTHING},,"]),
        fresh.database,
        "--add",
    )
    assert "added 0 numbers and updated 1" in again.stdout
    client.create_phone_number_order(
        ProductType="VoiceConnector", E164PhoneNumbers=["+14155550111"]
    )
    number = client.get_phone_number(PhoneNumberId="+14155550111")["PhoneNumber"]
    assert number["Capabilities"]["InboundSMS"] is True

    # A plain import replaces everything; reset brings the built-in catalog back.
    assert (
        run_import(write_csv(tmp_path / "only.csv", CATALOG_ROWS[:1]), fresh.database).returncode
        == 0
    )
    assert search_everything(client, Country="US") == ["+12065550123"]
    summary = numbers_command(fresh.database, "list")
    in_order = "InboundCall|InboundSMS|OutboundCall|OutboundSMS"
    assert summary.stdout.splitlines()[1:] == [f"+12065550123,US,Local,{in_order},Seattle,WA"]
    assert "1 imported numbers are in force" in summary.stderr
    reset = numbers_command(fresh.database, "reset")
    assert reset.returncode == 0, reset.stderr
    assert "built-in fictional one again" in reset.stdout
    assert search_everything(client, Country="US", AreaCode="206") == builtin_206
    # The number ordered while it was on offer stays ordered, and is not offered twice.
    assert "+14155550111" not in search_everything(client, Country="US", AreaCode="415")

    # Rows of a listing import back as the same offer.
    assert run_import(tmp_path / "listed.csv", fresh.database).returncode == 0
    assert search_everything(client, Country="US") == builtin_206
