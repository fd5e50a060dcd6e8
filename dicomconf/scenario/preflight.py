"""Is the target there at all?  One gentle association before the first scenario (PS3.8 9.1, 7.1).

Theory of operation
-------------------
A conformance verdict is a claim about a target that was seen alive and
speaking DICOM.  :func:`check_target` finds out, within a bounded time, with
what a careful operator would do by hand:

1. resolve the host name (in a helper thread, so a resolver that hangs is
   bounded by the timeout too);
2. open a TCP connection (PS3.8 9.1.2);
3. send an A-ASSOCIATE-RQ proposing Verification with the run's called and
   calling AE titles, and wait for an A-ASSOCIATE-AC, -RJ or an A-ABORT
   (PS3.8 9.3.2-9.3.4, 9.3.8); release an accepted association in order;
4. when the profile names a TLS port, complete a TLS handshake there
   (PS3.15 B.1) with the run's client context, host name checks included.

Any answer in DICOM counts as alive, a rejection included, with two
exceptions that are the user's configuration rather than the target's
conformance: a rejection because the called AE title is not recognised
(result 1, source 1, reason 7, PS3.8 Table 9-21) or the calling AE title is
not recognised (1, 1, 3).  Reporting 42 scenario rejections for a mistyped
``--called-ae`` helps no one, so the run stops and says which option to fix.

:class:`Reachability` carries the verdict: ``ok``, a ``cause`` keyword
(``resolve``, ``refused``, ``connect``, ``no-answer``, ``closed``, ``not-dicom``,
``tls``, ``called-ae``, ``calling-ae``), one line for the user and a hint.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from dicomconf.scenario.engine import Target
from dicomconf.scu.client import SCU, Aborted, Rejected, UnexpectedReply
from dicomconf.scu.connection import Closed, Connection, Silence, connect_failure
from dicomconf.scu.target import format_hostport, resolve_within
from dicomconf.ul import constants as C

DEFAULT_TIMEOUT = 5.0

# A-ASSOCIATE-RJ (source, reason) that are the user's configuration (PS3.8 Table 9-21).
_AE_REJECTIONS = {
    (1, 7): ("called-ae", "the called AE title {called!r} is not recognised", "give the target's AE title with --called-ae"),
    (1, 3): ("calling-ae", "the calling AE title {calling!r} is not recognised",
             "give an AE title the target knows with --calling-ae (or register ours with the target)"),
}


@dataclass(frozen=True, slots=True)
class Reachability:
    """What the check found: ``ok``, a ``cause`` keyword, one line, a hint, and the seconds it took."""

    ok: bool
    cause: str
    message: str
    hint: str | None = None
    seconds: float = 0.0

    def render(self) -> str:
        return self.message + (f"; {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "cause": self.cause, "message": self.message, "hint": self.hint,
                "seconds": round(self.seconds, 3)}


_CONNECT_HINTS = {
    "refused": "check the port, or that the target is running",
    "connect": "check the address, the port and any firewall between us",
}


def _connect_failure(where: str, exc: BaseException, timeout: float) -> Reachability:
    cause, why = connect_failure(exc, timeout)
    return Reachability(False, cause, f"{where} {why}", _CONNECT_HINTS.get(cause))


def _associate(target: Target, called: str, calling: str, timeout: float) -> Reachability:
    where = format_hostport(target.host, target.port)
    try:
        conn = Connection.open(target.host, target.port, timeout=timeout)
    except OSError as exc:
        return _connect_failure(where, exc, timeout)
    with conn:
        scu = SCU(conn, calling_ae=calling, called_ae=called)
        try:
            scu.associate(["verification"], timeout=timeout)
        except Rejected as exc:
            rj = exc.pdu
            known = _AE_REJECTIONS.get((rj.source, rj.reason)) if rj.result in (1, 2) else None
            if known is not None:
                cause, text, hint = known
                reason = C.RJ_REASON_NAMES.get((rj.source, rj.reason), f"reason {rj.reason}")
                return Reachability(
                    False, cause,
                    f"{where} rejected the association: {text.format(called=called, calling=calling)} "
                    f"(A-ASSOCIATE-RJ result {rj.result}, source {rj.source}, reason {rj.reason}: {reason})",
                    hint,
                )
            return Reachability(True, "rejected", f"{where} answers in DICOM (it rejected a Verification "
                                                  f"association: {exc})")
        except Aborted:
            return Reachability(True, "aborted", f"{where} answers in DICOM (it aborted a Verification association)")
        except Silence:
            return Reachability(False, "no-answer",
                                f"{where} accepted a TCP connection but did not answer an A-ASSOCIATE-RQ "
                                f"within {timeout:g}s", "is this a DICOM port (and not TLS-only)?")
        except Closed as exc:
            return Reachability(False, "closed", f"{where} {exc.kind} the connection without answering "
                                                 f"an A-ASSOCIATE-RQ", "is this a DICOM port (and not TLS-only)?")
        except UnexpectedReply as exc:
            return Reachability(False, "not-dicom", f"{where} did not answer an A-ASSOCIATE-RQ in DICOM: {exc}",
                                "is this a DICOM port?")
        except OSError as exc:
            return _connect_failure(where, exc, timeout)
        try:
            scu.release(timeout=timeout)
        except (Aborted, Closed, Silence, UnexpectedReply, OSError):
            pass  # it answered the RQ: alive; how it releases is for the scenarios to judge
    return Reachability(True, "accepted", f"{where} accepted a Verification association")


def _tls(target: Target, timeout: float) -> Reachability | None:
    if target.tls_port is None or target.tls_context is None:
        return None
    where = format_hostport(target.host, target.tls_port)
    try:
        conn = Connection.open(target.host, target.tls_port, tls=target.tls_context, timeout=timeout,
                               server_name=target.server_name)
    except ssl.SSLCertVerificationError as exc:
        return Reachability(False, "tls", f"TLS on {where}: the target's certificate was refused: "
                                          f"{exc.verify_message or exc}",
                            "give its CA with --tls-ca, the name it is for with --tls-server-name, "
                            "or --tls-insecure")
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        upper = reason.upper()
        if "PROTOCOL" in upper or "VERSION" in upper:
            # We offer TLS 1.2 and 1.3 only: PS3.15 B.10 forbids negotiating 1.0 or 1.1.
            hint = ("the target seems to speak only TLS 1.0/1.1, which the BCP 195 profiles forbid "
                    "(PS3.15 B.10, B.12)")
        elif "CERTIFICATE" in upper:
            hint = "does the target require a client certificate (--tls-cert/--tls-key)?"
        else:
            # A plain handshake-failure alert: no shared suite, or a client certificate it wants.
            hint = ("does the target require a client certificate (--tls-cert/--tls-key), or accept only "
                    "suites outside BCP 195 (PS3.15 B.12; --tls-ciphers widens the suites we offer)?")
        return Reachability(False, "tls", f"TLS handshake with {where} failed: {reason}", hint)
    except OSError as exc:
        return _connect_failure(f"{where} (TLS)", exc, timeout)
    conn.close()
    return None


def check_target(target: Target, called_ae: str, calling_ae: str, timeout: float = DEFAULT_TIMEOUT) -> Reachability:
    """Check that ``target`` answers in DICOM (see the module docstring); bounded by a few ``timeout``."""
    t0 = time.monotonic()

    def done(result: Reachability) -> Reachability:
        return Reachability(result.ok, result.cause, result.message, result.hint, time.monotonic() - t0)

    why = resolve_within(target.host, target.port, timeout)
    if why is not None:
        return done(Reachability(False, "resolve", why, "check the host name (or give its address)"))
    result = _associate(target, called_ae, calling_ae, timeout)
    if not result.ok:
        return done(result)
    return done(_tls(target, timeout) or result)


__all__ = ["DEFAULT_TIMEOUT", "Reachability", "check_target"]
