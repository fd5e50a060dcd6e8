"""TLS for the reference SCP's second listener (PS3.15 B.1, the seed's security layer).

Theory of operation
-------------------
:class:`TLSConfig` is the TLS part of the SCP's configuration and
:func:`server_context` builds the listener's ``ssl.SSLContext`` from it: the
server certificate and key, TLS 1.2 or later (PS3.15 B.9, BCP 195), and, when
``require_client_cert`` is set, verification of the client's certificate
against ``ca``.  A bad file or key is a :class:`TLSSetupError` with one line
saying which file and why; the configuration loader reports it with the
``file:line`` of the setting, the server at start.  The handshake itself runs
per connection inside asyncio, so a client that stalls its handshake delays
nobody.  This module imports nothing else of the SCP's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


class TLSSetupError(ValueError):
    """A certificate, key or CA file of the TLS listener that cannot be used."""


@dataclass
class TLSConfig:
    """The TLS listener beside the plain one (PS3.15 B.1, the seed's security layer)."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    require_client_cert: bool = False
    port: int | None = None  # None: no TLS listener; 0: pick a free port

    @property
    def enabled(self) -> bool:
        return self.port is not None


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    """The server-side SSL context for ``tls`` (PS3.15 B.1: TLS, certificates)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
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
