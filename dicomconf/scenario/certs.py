"""A throwaway certificate for the embedded reference SCP's TLS listener (PS3.15 B.1).

Theory of operation
-------------------
When no ``--target`` is given and the built-in profile claims TLS, the
plugin starts the reference SCP with a TLS listener beside the plain one.
:func:`self_signed` writes a fresh self-signed certificate (by default for
``localhost`` / 127.0.0.1 / ::1) and its key (EC P-256, valid one day) into a
temporary directory; the same certificate is the CA the scenario's TLS
client trusts.  It needs the ``cryptography`` package; without it
:class:`TLSUnavailable` is raised and TLS scenarios are skipped with that
reason.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from pathlib import Path


class TLSUnavailable(RuntimeError):
    """No way to make a certificate here (the ``cryptography`` package is missing)."""


DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def self_signed(directory: Path, names: tuple[str, ...] = DEFAULT_NAMES, stem: str = "") -> tuple[str, str]:
    """Write ``<stem>cert.pem`` and ``<stem>key.pem`` into ``directory``; return their paths.

    ``names`` become the certificate's subject alternative names: IP addresses as
    iPAddress entries, anything else as dNSName (RFC 6125 host name checks).
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise TLSUnavailable("the cryptography package is not installed: no certificate for the TLS listener") from None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dicomconf reference SCP")])
    now = _dt.datetime.now(_dt.timezone.utc)
    entries = []
    for entry in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            entries.append(x509.DNSName(entry))
    alt = x509.SubjectAlternativeName(entries)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=1))
        .add_extension(alt, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{stem}cert.pem", directory / f"{stem}key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if key_path.exists():
        key_path.unlink()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private from its first byte
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return str(cert_path), str(key_path)
