"""The BCP 195 secure transport connection profile that both sides apply (PS3.15 B.10, B.12).

Theory of operation
-------------------
PS3.15 Annex B carries the Upper Layer over TLS.  Its BCP 195 profiles ask
for TLS 1.2 or later: the Non-Downgrading BCP 195 TLS Profile (B.10) says
"Implementations shall not negotiate TLS version 1.1 [RFC 4346] or TLS
version 1.0 [RFC 2246]", and the BCP 195 RFC 8996, 9325 profile (B.12) says
"Servers and clients shall support TLS 1.2 and may support TLS 1.3".

:func:`apply` turns an ``ssl.SSLContext`` into such a context: TLS 1.2 as the
lowest version (TLS 1.3 stays allowed, and OpenSSL prefers it when both sides
have it, as B.12 asks of servers), exactly :data:`CIPHER_SUITES` for TLS 1.2,
no TLS compression, no renegotiation, and on a server its own order of
preference.  TLS 1.3 suites are OpenSSL's (AES-256-GCM, ChaCha20-Poly1305,
AES-128-GCM), which ``ssl`` cannot narrow and which are all AEAD suites.

The TLS 1.2 list: the four suites RFC 9325 section 4.2 recommends (BCP 195,
which B.12 names): ECDHE key exchange with AES-GCM, authenticated by an RSA
or an ECDSA certificate.  They hold B.10's two ECDHE suites
(``TLS_ECDHE_RSA_WITH_AES_{128,256}_GCM_SHA*``); the two ECDSA ones are of
the same strength (B.10: "Additional cipher suites of similar or greater
cryptographic strength may be supported").  B.10's two finite-field DHE
suites are left out: RFC 9325 discourages DHE for TLS 1.2, and ``ssl``
enables DHE only with a DH parameter file.  A caller may loosen the list
(``ciphers``), which is then the caller's claim, not the profile's.

This module holds the fact once for the reference SCP (``dicomconf.scp.tls``)
and the SCU (``dicomconf.scu.tls``); it opens no socket.
"""

from __future__ import annotations

import ssl
import warnings

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

# TLS 1.2 cipher suites of the profile: (IANA name, OpenSSL name), in order of preference
# (RFC 9325 4.2.1 puts TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 first among a client's proposals).
CIPHER_SUITES: tuple[tuple[str, str], ...] = (
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
)
CIPHERS = ":".join(openssl for _, openssl in CIPHER_SUITES)

# Options every profile context carries: no TLS-level compression (CRIME; RFC 9325 3.3) and
# no renegotiation (RFC 9325 3.5 allows only the secure kind; refusing it is simpler).
OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def apply(ctx: ssl.SSLContext, *, ciphers: str | None = None, server: bool = False) -> ssl.SSLContext:
    """Make ``ctx`` follow the profile (see the module docstring); return it.

    ``ciphers`` (an OpenSSL cipher string) replaces :data:`CIPHERS` for TLS 1.2; a
    string that selects no suite is a ``ValueError`` saying so.
    """
    ctx.minimum_version = MINIMUM_VERSION
    try:
        ctx.set_ciphers(ciphers or CIPHERS)
    except ssl.SSLError:
        raise ValueError(f"the cipher list {ciphers or CIPHERS!r} selects no cipher suite this OpenSSL "
                         f"({ssl.OPENSSL_VERSION}) has") from None
    ctx.options |= OPTIONS
    if server:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


# TLS versions by the names ``SSLSocket.version()`` gives them ("TLSv1.0" is accepted for "TLSv1").
VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.0": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def set_versions(ctx: ssl.SSLContext, minimum: str | None = None, maximum: str | None = None) -> None:
    """Set ``ctx``'s lowest and highest TLS version by name (:data:`VERSIONS`); an unknown name
    is a ``ValueError``.  ``ssl`` warns that TLS 1.0/1.1 are deprecated: offering them on purpose
    (a weak server in a test, a probe that a target refuses them) is not a mistake, so no warning."""
    for name in (minimum, maximum):
        if name is not None and name not in VERSIONS:
            raise ValueError(f"unknown TLS version {name!r}; known: {', '.join(VERSIONS)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if minimum is not None:
            ctx.minimum_version = VERSIONS[minimum]
        if maximum is not None:
            ctx.maximum_version = VERSIONS[maximum]


def tls12_suites(ctx: ssl.SSLContext) -> list[str]:
    """The OpenSSL names of the TLS 1.2 (and older) suites ``ctx`` offers or accepts."""
    return [c["name"] for c in ctx.get_ciphers() if c.get("protocol") != "TLSv1.3"]


__all__ = ["CIPHERS", "CIPHER_SUITES", "MINIMUM_VERSION", "OPTIONS", "VERSIONS", "apply", "set_versions",
           "tls12_suites"]
