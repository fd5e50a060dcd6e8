"""TLS for the reference SCP's second listener (PS3.15 B.1, the seed's security layer).

Theory of operation
-------------------
:func:`server_context` builds the ``ssl.SSLContext`` of the TLS listener from
a :class:`~dicomconf.scp.config.TLSConfig`: the server certificate and key,
TLS 1.2 or later, and, when ``require_client_cert`` is set, verification of
the client's certificate against ``ca``.  A bad file or key is reported as a
:class:`~dicomconf.scp.config.ConfigError` at start, never as a traceback.
The handshake itself runs per connection inside asyncio, so a client that
stalls its handshake delays nobody.
"""

from __future__ import annotations

import ssl

from dicomconf.scp.config import ConfigError, TLSConfig


def server_context(tls: TLSConfig, where: str = "tls") -> ssl.SSLContext:
    """The server-side SSL context for ``tls`` (PS3.15 B.1: TLS, certificates)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{where}: cannot load tls.cert {tls.cert!r} / tls.key {tls.key!r}: {exc}") from None
    if tls.ca:
        try:
            ctx.load_verify_locations(cafile=tls.ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{where}: cannot load tls.ca {tls.ca!r}: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
