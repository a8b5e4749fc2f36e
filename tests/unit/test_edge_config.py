"""The SIP edge's rendered files, from its settings: listeners, trust, gateways with their
credentials and sockets, TLS, the routing service's headers. (tests/integration/test_sip_edge.py
checks the result with `kamailio -c` and runs it.)"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from chimeproxy.dataplane.edge import command, config
from chimeproxy.dataplane.edge.settings import (
    EdgeSettings,
    Gateway,
    HostPort,
    Listen,
    Trunk,
    service_url,
)
from chimeproxy.settings import SettingsError, from_arguments

RUNTIME = config.Runtime(Path("/run/edge"), 5999, "mask-key-1", ("198.51.100.0/24",))


def settings(**overrides: Any) -> EdgeSettings:
    values: dict[str, Any] = {
        "listen": (Listen.parse("udp:192.0.2.1:5080"),),
        "trunk": (Trunk.parse("198.51.100.0/24"),),
        "gateway": (Gateway.parse("192.0.2.10:5060"),),
        "service_url": service_url("http://127.0.0.1:8089/"),
        "route_secret": "s3cret-value",
        "mask_key": "mask-key-1",
    } | overrides
    return EdgeSettings(**values)


def test_the_template_is_rendered_with_every_setting() -> None:
    rendered = config.render(settings(), RUNTIME)
    assert "{{" not in rendered
    assert "listen=udp:192.0.2.1:5080\n" in rendered
    assert "listen=tcp:127.0.0.1:5999" in rendered  # the RPC port, for the command only
    assert '"http://127.0.0.1:8089/_chimeproxy/route"' in rendered
    assert "X-Chimeproxy-Route-Secret: s3cret-value" in rendered
    # The server stops a routing request's database work a little before the edge gives up.
    assert "X-Chimeproxy-Deadline-Ms: 1750" in rendered
    assert 'modparam("topoh", "mask_key", "mask-key-1")' in rendered
    assert 'is_in_subnet("$si", "198.51.100.0/24")' in rendered
    assert 'sl_send_reply("403", "Forbidden");' in rendered
    assert "enable_tls=no" in rendered and 'loadmodule "tls.so"' not in rendered
    without_secret = config.render(settings(route_secret=None), RUNTIME)
    assert "X-Chimeproxy-Route-Secret" not in without_secret


def test_drop_untrusted_answers_strangers_nothing() -> None:
    rendered = config.render(settings(drop_untrusted=True), RUNTIME)
    trust = rendered[rendered.index("route[TRUST]") : rendered.index("route[WITHINDLG]")]
    assert "sl_send_reply" not in trust.split('update_stat("untrusted_rejected"')[1]


def test_advertise_goes_on_every_listener() -> None:
    rendered = config.render(
        settings(
            listen=(Listen.parse("udp:10.0.0.5:5060"), Listen.parse("tcp:10.0.0.5:5070")),
            advertise=HostPort.parse_optional_port("203.0.113.10"),
        ),
        RUNTIME,
    )
    assert "listen=udp:10.0.0.5:5060 advertise 203.0.113.10:5060" in rendered
    assert "listen=tcp:10.0.0.5:5070 advertise 203.0.113.10:5070" in rendered
    with_port = config.render(
        settings(advertise=HostPort.parse_optional_port("203.0.113.10:5999")), RUNTIME
    )
    assert "listen=udp:192.0.2.1:5080 advertise 203.0.113.10:5999" in with_port


def test_each_gateway_transport_gets_a_listener_and_a_socket() -> None:
    chosen = settings(
        gateway=(
            Gateway.parse("sip:gw1.example.net;transport=tls"),
            Gateway.parse("sip:gw2.example.net:5080;transport=tcp"),
            Gateway.parse("192.0.2.10:5060"),
        ),
        tls_cert="/etc/edge/cert.pem",
        tls_key="/etc/edge/key.pem",
    )
    assert [str(listen) for listen in config.listeners(chosen)] == [
        "udp:192.0.2.1:5080",
        "tls:192.0.2.1:5081",
        "tcp:192.0.2.1:5080",
    ]
    rows = config.dispatcher_list(chosen).splitlines()[1:]
    assert rows[:3] == [
        "1 sip:gw1.example.net:5061;transport=tls 0 3 name=gw1;socket=tls:192.0.2.1:5081",
        "2 sip:gw1.example.net:5061;transport=tls 0 3 name=gw1;socket=tls:192.0.2.1:5081",
        "1 sip:gw2.example.net:5080;transport=tcp 0 2 name=gw2;socket=tcp:192.0.2.1:5080",
    ]
    rendered = config.render(chosen, RUNTIME)
    assert "enable_tls=yes" in rendered and 'loadmodule "tls.so"' in rendered


def test_credentials_per_gateway(tmp_path: Path) -> None:
    table = tmp_path / "gateways.csv"
    table.write_text("gateway,username,password\ngw2.example.net,second,pw2\n")
    chosen = settings(
        gateway=(
            Gateway.parse("sip:gw1.example.net"),
            Gateway.parse("sip:gw2.example.net"),
            Gateway.parse("sip:own@gw3.example.net"),
        ),
        gateway_username="shared",
        gateway_password="pw1",
        gateway_credentials=str(table),
    )
    rows = [row for row in config.dispatcher_list(chosen).splitlines() if row.startswith("1 ")]
    assert rows[0].endswith(";user=shared;password=pw1")
    assert rows[1].endswith(";user=second;password=pw2")
    assert rows[2].endswith(";user=own;password=pw1")
    table.write_text("gw2.example.net,second\n")
    with pytest.raises(config.ConfigError, match=r"gateways.csv:1: expected"):
        config.dispatcher_list(chosen)


def test_tls_verifies_gateways_only_with_a_ca() -> None:
    assert "verify_certificate = no" in config.tls_config(settings()).split("[client")[1]
    verified = config.tls_config(settings(tls_ca="/etc/edge/ca.pem")).split("[client")[1]
    assert "ca_list = /etc/edge/ca.pem" in verified
    assert "verify_certificate = yes" in verified


def test_without_a_trunk_only_loopback_is_trusted_and_listened_on() -> None:
    local = settings(trunk=(), listen=(Listen.parse("udp:127.0.0.1:5060"),))
    config.check(local)
    assert config.trunk_networks(local) == config.LOOPBACK_NETWORKS
    with pytest.raises(config.ConfigError, match="without --trunk"):
        config.check(settings(trunk=()))


def test_a_trunk_host_name_is_resolved() -> None:
    chosen = settings(trunk=(Trunk.parse("localhost"), Trunk.parse("203.0.113.7")))
    networks = config.trunk_networks(chosen)
    assert "127.0.0.1/32" in networks and "203.0.113.7/32" in networks
    with pytest.raises(config.ConfigError, match="does not resolve"):
        config.trunk_networks(settings(trunk=(Trunk.parse("no-such-host.invalid"),)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.10:5060", Gateway("192.0.2.10", 5060, "udp")),
        ("sip:gw.example.net", Gateway("gw.example.net", 5060, "udp")),
        ("sip:gw.example.net;transport=TCP", Gateway("gw.example.net", 5060, "tcp")),
        ("sips:gw.example.net", Gateway("gw.example.net", 5061, "tls")),
        ("sip:u1@[2001:db8::1]:5070", Gateway("[2001:db8::1]", 5070, "udp", "u1")),
    ],
)
def test_gateway_uris(text: str, expected: Gateway) -> None:
    assert Gateway.parse(text) == expected


def test_repeated_settings_from_flags_and_environment() -> None:
    from_flags = from_arguments(
        EdgeSettings,
        {"gateway": ["10.0.0.1:5060", "sip:10.0.0.2;transport=tcp"], "trunk": ["10.1.0.0/16"]},
        environ={"CHIMEPROXY_SIP_TRUNK": "10.9.0.0/16"},
    )
    assert [str(g) for g in from_flags.gateway] == [
        "sip:10.0.0.1:5060",
        "sip:10.0.0.2:5060;transport=tcp",
    ]
    assert [str(t) for t in from_flags.trunk] == ["10.1.0.0/16"]  # the flag wins
    from_environment = from_arguments(
        EdgeSettings, {}, environ={"CHIMEPROXY_SIP_TRUNK": "10.9.0.0/16, 10.8.0.1"}
    )
    assert [str(t) for t in from_environment.trunk] == ["10.9.0.0/16", "10.8.0.1"]
    with pytest.raises(SettingsError, match="--gateway"):
        from_arguments(EdgeSettings, {"gateway": ["sip:gw;transport=sctp"]}, environ={})


def test_control_ports_are_distinct_even_when_the_draw_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The edge's four control listeners never share a port, though each is only probed, not
    held, until its daemon binds it."""
    free = list(itertools.islice(filter(command._free_now, command.CONTROL_PORTS), 4))
    draws = iter([free[0], free[0], free[1], free[0], free[1], free[2], free[3]])
    monkeypatch.setattr(command.random, "choice", lambda _ports: next(draws))
    assert command.free_control_ports(4) == free
