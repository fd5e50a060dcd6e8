"""The SCU's TLS client context and handshake probes (PS3.15 B.10, B.12: the BCP 195 profiles).

Theory of operation
-------------------
:func:`client_context` builds the ``ssl.SSLContext`` the SCU wraps its
connections in.  The target's certificate chain is verified against the
system's trust store (or ``ca``) *and* its host name is checked
(``check_hostname``); the context follows the Non-Downgrading BCP 195
profile as :mod:`dicomconf.ul.tls_profile` states it (TLS 1.2 or 1.3, the
profile's TLS 1.2 suites, no compression, no renegotiation) unless
``ciphers`` loosens the TLS 1.2 suites.  A client certificate (``cert`` and
``key``) is offered when given.  ``insecure=True`` turns verification off;
callers record that choice in their reports, because a verdict reached that
way says nothing about who answered.  Files that cannot be read, or a key
that does not match its certificate, are a ``ValueError`` with one line
saying which file and why.

Checking a target's TLS needs offers the SCU would never make on its own.
:func:`variant` builds one from a context :func:`client_context` made (the
same CA and client certificate): one TLS version only (``TLSv1`` ...),
other TLS 1.2 cipher suites (an OpenSSL cipher string, ``@SECLEVEL=0`` so
that OpenSSL lets weak suites be offered at all), no client certificate,
or, for a handshake the target should refuse, no verification (so that a
certificate problem is never taken for a refusal).  What this machine's
OpenSSL cannot offer (TLS 1.0 compiled out, export suites gone since OpenSSL
1.1.0) is a :class:`ProbeUnavailable`, never a smaller offer passed off as
the asked one; the :class:`Offer` says what was offered.
:func:`try_handshake` opens a TCP connection, runs the handshake and closes
it: the :class:`Handshake` says whether the target completed it (version,
suite) or refused it (its alert, or its close).  In TLS 1.3 a server checks
the client's certificate after the client has finished, so there a refusal
is an alert or a close within :data:`SETTLE` seconds after the handshake.
"""

from __future__ import annotations

import socket
import ssl
import weakref
from dataclasses import dataclass

from dicomconf.ul import tls_profile

SETTLE = 1.0  # seconds to wait, after a TLS 1.3 handshake, for the server's alert

# OpenSSL reasons that mean our side could not make the offer (nothing reached the target).
_LOCAL_REASONS = frozenset({
    "NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_CIPHER_MATCH", "UNSAFE_LEGACY_RENEGOTIATION_DISABLED",
})
_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)  # a probe talks to old servers too


@dataclass(frozen=True, slots=True)
class _Made:
    ca: str | None
    cert: str | None
    key: str | None
    insecure: bool
    ciphers: str | None


_MADE: weakref.WeakKeyDictionary[ssl.SSLContext, _Made] = weakref.WeakKeyDictionary()


class ProbeUnavailable(Exception):
    """This machine's OpenSSL (or a context not made here) cannot make the offer asked for."""


def client_context(
    *,
    ca: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    insecure: bool = False,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    """The client-side SSL context: verify chain and host name unless ``insecure`` (PS3.15 B.10, B.12)."""
    made = _Made(ca, cert, key, insecure, ciphers)
    ctx = _build(made)
    _MADE[ctx] = made  # what variant() rebuilds from
    return ctx


def _build(made: _Made, *, client_cert: bool = True) -> ssl.SSLContext:
    if (made.cert is None) != (made.key is None):
        raise ValueError("a client certificate needs both --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls_profile.apply(ctx, ciphers=made.ciphers)
    if made.ca:
        try:
            ctx.load_verify_locations(cafile=made.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA file {made.ca!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if made.cert and made.key and client_cert:
        try:
            ctx.load_cert_chain(made.cert, made.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the client certificate {made.cert!r} / key {made.key!r}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
    if made.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def verifies(ctx: ssl.SSLContext | None) -> bool:
    """True if ``ctx`` verifies the target's certificate chain and host name."""
    return ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


@dataclass(frozen=True, slots=True)
class Offer:
    """What a :func:`variant` context offers: a version (None: the profile's), TLS 1.2 suites
    (None: the profile's), whether a client certificate goes with it, and notes on what this
    OpenSSL could not offer of what was asked."""

    version: str | None
    suites: tuple[str, ...] | None
    client_cert: bool
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.version:
            parts = [f"{self.version} only"]
        else:
            parts = ["TLSv1.2 only" if self.suites is not None else "the profile's versions"]
        if self.suites is not None:
            shown = ", ".join(self.suites[:6]) + (f" and {len(self.suites) - 6} more" if len(self.suites) > 6 else "")
            parts.append(f"{len(self.suites)} suite(s): {shown}")
        if not self.client_cert:
            parts.append("no client certificate")
        return "; ".join(parts + list(self.notes))


def variant(
    base: ssl.SSLContext | None,
    *,
    version: str | None = None,
    ciphers: str | list[str] | None = None,
    client_cert: bool = True,
    verify: bool = True,
) -> tuple[ssl.SSLContext, Offer]:
    """A context like ``base`` that offers only ``version`` and/or the suites ``ciphers`` selects
    (a list: each part reported on its own), with or without our client certificate, verifying
    or not; see the module docstring.  ``ProbeUnavailable`` when the offer cannot be made here."""
    made = _MADE.get(base) if base is not None else None
    if made is None:
        raise ProbeUnavailable("the run's TLS context was not made by dicomconf.scu.tls.client_context, "
                               "so no variant of it can be built")
    ctx = _build(made if verify else _Made(made.ca, made.cert, made.key, True, made.ciphers), client_cert=client_cert)
    if not verify:
        ctx.options |= _LEGACY_SERVER_CONNECT
    notes: list[str] = []
    suites: tuple[str, ...] | None = None
    if ciphers is not None:
        parts = [ciphers] if isinstance(ciphers, str) else list(ciphers)
        usable = []
        for part in parts:
            found = _suites(part)
            if found:
                usable.append(part)
            else:
                notes.append(f"{part}: no such suite in this OpenSSL ({ssl.OPENSSL_VERSION})")
        if not usable:
            raise ProbeUnavailable(f"this OpenSSL ({ssl.OPENSSL_VERSION}) has no cipher suite for "
                                   f"{' or '.join(parts)}: the offer cannot be made")
        ctx.set_ciphers(":".join(usable) + ":@SECLEVEL=0")
        suites = tuple(tls_profile.tls12_suites(ctx))
    elif version in ("TLSv1", "TLSv1.0", "TLSv1.1"):
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0
    if version is not None:
        if version not in tls_profile.VERSIONS:
            raise ValueError(f"unknown TLS version {version!r}; known: {', '.join(tls_profile.VERSIONS)}")
        if not _has(version):
            raise ProbeUnavailable(f"this OpenSSL ({ssl.OPENSSL_VERSION}) cannot offer {version}")
        tls_profile.set_versions(ctx, minimum=version, maximum=version)
    elif ciphers is not None:
        tls_profile.set_versions(ctx, maximum="TLSv1.2")  # TLS 1.3 suites cannot be chosen: stay at 1.2
    return ctx, Offer(version, suites, client_cert and made.cert is not None, tuple(notes))


def _suites(part: str) -> list[str]:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.set_ciphers(f"{part}:@SECLEVEL=0")
    except ssl.SSLError:
        return []
    return tls_profile.tls12_suites(probe)


def _has(version: str) -> bool:
    flag = {"TLSv1": "HAS_TLSv1", "TLSv1.0": "HAS_TLSv1", "TLSv1.1": "HAS_TLSv1_1",
            "TLSv1.2": "HAS_TLSv1_2", "TLSv1.3": "HAS_TLSv1_3"}[version]
    return bool(getattr(ssl, flag, False))


@dataclass(frozen=True, slots=True)
class Handshake:
    """How a handshake went: ``completed`` with ``version`` and ``cipher``, or refused for ``reason``."""

    completed: bool
    version: str | None = None
    cipher: str | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.completed:
            return f"handshake completed: {self.version}, {self.cipher}"
        return f"handshake refused: {self.reason}" + (f" ({self.version})" if self.version else "")


def try_handshake(
    host: str, port: int, ctx: ssl.SSLContext, *, server_name: str | None = None, timeout: float = 5.0,
    settle: float = SETTLE,
) -> Handshake:
    """Open a TCP connection to ``host``:``port``, run the TLS handshake with ``ctx`` and close.

    ``OSError`` when no TCP connection opens, ``TimeoutError`` when the target neither completes
    nor refuses the handshake within ``timeout``, :class:`ProbeUnavailable` when our side gave up
    before the target could answer; otherwise a :class:`Handshake`.  The name sent as SNI (and
    checked, if ``ctx`` checks names) is ``server_name``, else ``host``.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            tls = ctx.wrap_socket(sock, server_hostname=server_name or host)
        except ssl.SSLCertVerificationError:
            raise
        except ssl.SSLError as exc:
            if exc.reason in _LOCAL_REASONS:
                raise ProbeUnavailable(f"this OpenSSL ({ssl.OPENSSL_VERSION}) would not send the offer: "
                                       f"{exc.reason}") from None
            return Handshake(False, reason=_why(exc))
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
            return Handshake(False, reason=f"connection reset ({exc.__class__.__name__})")
        sock = tls
        version, cipher = tls.version(), (tls.cipher() or ("?",))[0]
        if version == "TLSv1.3":
            late = _refused_after(tls, min(settle, timeout))
            if late:
                return Handshake(False, version, cipher, late)
        return Handshake(True, version, cipher)
    finally:
        try:
            sock.close()
        except OSError:
            pass


def _refused_after(tls: ssl.SSLSocket, settle: float) -> str:
    """An alert or a close within ``settle`` seconds of a TLS 1.3 handshake ('' if none)."""
    tls.settimeout(settle)
    try:
        data = tls.recv(1)
    except TimeoutError:
        return ""
    except ssl.SSLError as exc:
        return _why(exc)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return "connection reset after the handshake"
    return "" if data else "connection closed after the handshake"


def _why(exc: ssl.SSLError) -> str:
    reason = exc.reason or exc.__class__.__name__
    if isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return "connection closed during the handshake"
    return reason.lower().replace("_", " ")


__all__ = ["SETTLE", "Handshake", "Offer", "ProbeUnavailable", "client_context", "try_handshake", "variant",
           "verifies"]
