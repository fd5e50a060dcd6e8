"""TLS for the reference SCP's second listener (PS3.15 Annex B, the seed's security layer).

Theory of operation
-------------------
:class:`TLSConfig` is the TLS part of the SCP's configuration and
:func:`server_context` builds the listener's ``ssl.SSLContext`` from it.  By
default the context follows the Non-Downgrading BCP 195 TLS Profile (PS3.15
B.10) and the BCP 195 RFC 8996, 9325 profile (B.12) as
:mod:`dicomconf.ul.tls_profile` states them: TLS 1.2 or 1.3 only, the
profile's four ECDHE AES-GCM suites for TLS 1.2 in the server's order of
preference, no compression, no renegotiation.  A TLS 1.0/1.1 ClientHello, or
one offering only NULL-encryption, anonymous or export suites, fails its
handshake and the connection is closed.  ``require_client_cert`` makes the
handshake fail without a client certificate that ``ca`` verifies.

``min_version`` and ``ciphers`` (configuration keys ``tls.min_version`` and
``tls.ciphers``) loosen the profile: a fake PACS that old modalities reach
with TLS 1.0, or a deliberately weak server in tests; the command says at
start that its listener is outside the profile.  A bad file, key,
version or cipher list is a :class:`TLSSetupError` with one line saying which
and why; the configuration loader reports it with the ``file:line`` of the
setting, the server at start.  The handshake itself runs per connection
inside asyncio, so a client that stalls its handshake delays nobody.  This
module imports nothing else of the SCP's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from dicomconf.ul import tls_profile


class TLSSetupError(ValueError):
    """A certificate, key or CA file of the TLS listener that cannot be used."""


@dataclass
class TLSConfig:
    """The TLS listener beside the plain one (PS3.15 B.1, B.10, B.12; the seed's security layer)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    require_client_cert: bool = False
    port: int | None = None  # None: no TLS listener; 0: pick a free port
    min_version: str | None = None  # None: TLSv1.2 (the profile); "TLSv1" ... loosen it (tests)
    ciphers: str | None = None  # None: the profile's TLS 1.2 suites; an OpenSSL cipher string loosens it

    @property
    def enabled(self) -> bool:
        return self.port is not None


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    """The server-side SSL context for ``tls`` (PS3.15 B.10, B.12; see the module docstring)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        tls_profile.apply(ctx, ciphers=tls.ciphers, server=True)
    except ValueError as exc:
        raise TLSSetupError(f"tls.ciphers: {exc}") from None
    try:
        tls_profile.set_versions(ctx, minimum=tls.min_version)
    except ValueError as exc:
        raise TLSSetupError(f"tls.min_version: {exc}") from None
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(f"cannot load tls.cert {tls.cert!r} / tls.key {tls.key!r}: {exc}") from None
    if tls.ca:
        try:
            ctx.load_verify_locations(cafile=tls.ca)
        except (OSError, ssl.SSLError) as exc:
            raise TLSSetupError(f"cannot load tls.ca {tls.ca!r}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
