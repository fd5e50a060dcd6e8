"""The private TLS key log stays small over many sessions, and never loses a session's lines (PS3.15 B.1)."""

from __future__ import annotations

import os
import socket
import ssl
import threading

import pytest

from dicomconf.scu import tls_channel
from dicomconf.scu.tls_channel import TLSChannel


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    certs = pytest.importorskip("dicomconf.scenario.certs")
    try:
        cert, key = certs.self_signed(tmp_path_factory.mktemp("keylog"))
    except certs.TLSUnavailable as exc:
        pytest.skip(str(exc))

    def make() -> tuple[ssl.SSLContext, ssl.SSLContext]:
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        return server, client

    return make


def _session(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[TLSChannel, TLSChannel]:
    """One handshake over a socket pair: the server's channel and the client's."""
    a, b = socket.socketpair()
    server = TLSChannel(a, server_ctx, server_side=True)
    client = TLSChannel(b, client_ctx, server_side=False)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.handshake(5.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    client.handshake(5.0)
    thread.join(10)
    assert not errors
    return server, client


def _private_size() -> int:
    return os.path.getsize(tls_channel._OWN[0])


def _check_lines(server: TLSChannel, client: TLSChannel) -> None:
    assert client.client_random is not None and client.key_lines
    assert all(line.split()[1] == client.client_random.hex() for line in client.key_lines)
    assert server.key_lines == client.key_lines  # both ends of one session, in one process


def test_the_private_key_log_is_emptied_once_long_and_every_session_keeps_its_lines(contexts, monkeypatch):
    server_ctx, client_ctx = contexts()
    _session(server_ctx, client_ctx)  # the contexts now write to the private file
    start = _private_size()
    for _ in range(4):
        _check_lines(*_session(server_ctx, client_ctx))
    grown = _private_size()
    assert grown > start  # under the limit, the lines stay
    monkeypatch.setattr(tls_channel, "KEY_LOG_LIMIT", 1)
    for _ in range(4):
        _check_lines(*_session(server_ctx, client_ctx))
        assert _private_size() == 0  # emptied after each session, its lines already taken


def test_no_emptying_while_a_handshake_may_still_write(contexts, monkeypatch):
    server_ctx, client_ctx = contexts()
    monkeypatch.setattr(tls_channel, "KEY_LOG_LIMIT", 1)
    _session(server_ctx, client_ctx)
    waiting_a, waiting_b = socket.socketpair()
    waiting = TLSChannel(waiting_a, client_ctx, server_side=False)  # counted in: its handshake may start
    try:
        _check_lines(*_session(server_ctx, client_ctx))
        assert _private_size() > 0  # kept: another handshake is under way
        waiting_b.close()
        with pytest.raises((ssl.SSLError, OSError)):
            waiting.handshake(2.0)  # fails: counted out
        _check_lines(*_session(server_ctx, client_ctx))
        assert _private_size() == 0
    finally:
        waiting_a.close()


def test_a_key_log_the_user_named_is_never_emptied(contexts, monkeypatch, tmp_path):
    server_ctx, client_ctx = contexts()
    named = tmp_path / "user.keys"
    client_ctx.keylog_filename = str(named)
    monkeypatch.setattr(tls_channel, "KEY_LOG_LIMIT", 1)
    sizes = []
    for _ in range(3):
        server, client = _session(server_ctx, client_ctx)
        assert client.key_lines
        sizes.append(named.stat().st_size)
    assert sizes[0] < sizes[1] < sizes[2]
