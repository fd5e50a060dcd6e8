"""The SCU's TLS client context (PS3.15 B.1, the BCP 195 secure transport profiles).

Theory of operation
-------------------
:func:`client_context` builds the ``ssl.SSLContext`` the SCU wraps its
connections in.  By default it is ``ssl.create_default_context``: the
target's certificate chain is verified against the system's trust store (or
``ca``) *and* its host name is checked (``check_hostname``), with TLS 1.2 as
the lowest version (PS3.15 B.9 / BCP 195: no downgrade below TLS 1.2).  A
client certificate (``cert`` and ``key``) is offered when given.
``insecure=True`` turns verification off; callers record that choice in
their reports, because a verdict reached that way says nothing about who
answered.

Files that cannot be read, or a key that does not match its certificate, are
a ``ValueError`` with one line saying which file and why.
"""

from __future__ import annotations

import ssl


def client_context(
    *, ca: str | None = None, cert: str | None = None, key: str | None = None, insecure: bool = False
) -> ssl.SSLContext:
    """The client-side SSL context: verify chain and host name unless ``insecure`` (PS3.15 B.1)."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both --tls-cert and --tls-key")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load the CA file {ca!r}: {getattr(exc, 'strerror', None) or exc}") from None
    if cert and key:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the client certificate {cert!r} / key {key!r}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


__all__ = ["client_context"]
