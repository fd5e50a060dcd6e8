"""Targets as users write them, and connections to any address (PS3.8 9.1.1, 9.1.2).

dicomconf connects to whatever host the user names.  These tests prove that no
address is refused and that a host name is tried address by address, while the
only traffic they send goes to loopback: non-loopback addresses meet a mocked
``socket.create_connection``, and host names a test double of the resolver.
"""

from __future__ import annotations

import socket
import threading

import pytest

from dicomconf.scu import connection as connection_module
from dicomconf.scu.connection import Connection
from dicomconf.scu.target import Address, parse_target
from dicomconf.ul.pdu import AReleaseRQ


@pytest.mark.parametrize(
    "text, host, port",
    [
        ("127.0.0.1:11112", "127.0.0.1", 11112),
        ("127.0.0.1", "127.0.0.1", 104),
        ("192.0.2.10:4242", "192.0.2.10", 4242),
        ("pacs.hospital.lan:104", "pacs.hospital.lan", 104),
        ("pacs.hospital.lan", "pacs.hospital.lan", 104),
        ("PACS-01", "PACS-01", 104),
        ("localhost:5000", "localhost", 5000),
        ("[::1]:11112", "::1", 11112),
        ("[2001:db8::10]", "2001:db8::10", 104),
        ("2001:db8::10", "2001:db8::10", 104),
        ("fe80::1%eth0", "fe80::1%eth0", 104),
        (" pacs.example.org:2762 ", "pacs.example.org", 2762),
    ],
)
def test_every_address_form_parses(text, host, port):
    assert parse_target(text) == Address(host, port)


def test_default_port_is_the_callers():
    assert parse_target("pacs", default_port=2762).port == 2762


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty"),
        ("pacs:0", "TCP port"),
        ("pacs:70000", "TCP port"),
        ("pacs:http", "TCP port"),
        ("[::1", "without"),
        ("[::1]x", "after"),
        ("[pacs]:104", "IPv6"),
        ("pac s:104", "host name"),
        ("1:2:zz::1", "IPv6"),
        (":104", "empty"),
    ],
)
def test_bad_targets_are_one_clear_error(text, why):
    with pytest.raises(ValueError, match=why) as info:
        parse_target(text)
    assert "HOST:PORT" in str(info.value)


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.20", "8.8.8.8", "2001:db8::7", "pacs.hospital.lan"])
def test_no_address_is_refused(monkeypatch, host):
    """Non-loopback addresses and names go straight to the socket layer (mocked: nothing is sent)."""
    calls = []

    class Stop(Exception):
        pass

    def fake_create_connection(address, timeout=None, *args, **kwargs):
        calls.append(address)
        raise Stop

    monkeypatch.setattr(connection_module.socket, "create_connection", fake_create_connection)
    with pytest.raises(Stop):
        Connection.open(host, 104, timeout=0.5)
    assert calls == [(host, 104)]


def _listener(family, address):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind(address)
    sock.listen(1)
    return sock


def test_a_host_name_is_tried_address_by_address(monkeypatch):
    """A name resolving to several addresses: the first refuses, the second answers (as create_connection does)."""
    listener = _listener(socket.AF_INET, ("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # A port on 127.0.0.2 with nothing listening: connecting there is refused.
    refused = ("127.0.0.2", port)
    real = socket.getaddrinfo
    asked = []

    def resolver(host, port_, *args, **kwargs):
        if host == "pacs.example.test":
            asked.append(host)
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", refused),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port_)),
            ]
        return real(host, port_, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    got = []
    thread = threading.Thread(target=lambda: got.append(listener.accept()[0].recv(100)))
    thread.start()
    try:
        with Connection.open("pacs.example.test", port, timeout=2) as conn:
            conn.send(AReleaseRQ())
            assert conn.peer == ("127.0.0.1", port)
        thread.join(5)
    finally:
        listener.close()
    assert asked == ["pacs.example.test"]
    assert got == [AReleaseRQ().encode()]


def test_an_unresolvable_name_is_an_oserror():
    with pytest.raises(OSError):
        Connection.open("no-such-host.invalid", 104, timeout=2)


def test_ipv6_bracket_form_connects():
    try:
        listener = _listener(socket.AF_INET6, ("::1", 0))
    except OSError as exc:
        pytest.skip(f"::1 is not configured here: {exc}")
    try:
        address = parse_target(f"[::1]:{listener.getsockname()[1]}")
        with Connection.open(address.host, address.port, timeout=2) as conn:
            accepted, _ = listener.accept()
            conn.send(AReleaseRQ())
            assert accepted.recv(100) == AReleaseRQ().encode()
            accepted.close()
            assert conn.conversation.server[0] == "::1"
    finally:
        listener.close()


def test_a_lookup_is_bounded_by_its_timeout(monkeypatch):
    """A resolver that hangs (no DNS server reachable) costs the timeout, not the resolver's minutes."""
    import time

    from dicomconf.scu.target import resolve_within

    real = socket.getaddrinfo

    def slow(host, *args, **kwargs):
        if host == "hangs.example.test":
            time.sleep(5)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    t0 = time.monotonic()
    why = resolve_within("hangs.example.test", 104, 0.3)
    assert time.monotonic() - t0 < 2
    assert why == "the name 'hangs.example.test' did not resolve within 0.3s"
    assert resolve_within("127.0.0.1", 104, 2) is None
    assert "does not resolve" in resolve_within("no-such-host.invalid", 104, 5)
