"""One probe's conversations with the target: gentle, counted, always closed.

Theory of operation
-------------------
A :class:`Session` holds what every probe step needs (the target's address,
the AE titles, the TLS context, the time bounds) and opens every connection
the probe makes, so it can count them (the profile's header says how many
associations it took) and so every one of them ends the same way: an
association that was accepted is released (A-RELEASE-RQ, A-RELEASE-RP,
PS3.8 7.2) and the socket closed at once; a rejected one is closed at once,
so the target does not sit out its ARTIM timer in Sta13 (PS3.8 9.2).

:meth:`Session.try_associate` is the usual step: open, send one
A-ASSOCIATE-RQ, read the answer, release, close, and return an
:class:`Outcome` saying what came back (an A-ASSOCIATE-AC, an
A-ASSOCIATE-RJ with its result / source / reason, an A-ABORT, silence, a
close, or a connection that could not be made) with a short description for
the profile's comments.  Nothing it does raises on what a target answers.

:func:`reachable` is the first step of a probe: a host name that does not
resolve (within the timeout: the lookup runs in a helper thread) is
:class:`Unreachable`, with one clear sentence; a port that refuses or a
target that does not answer is found by the first association.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dicomconf.scu.client import SCU, Aborted, Rejected, UnexpectedReply
from dicomconf.scu.connection import Closed, Connection, Silence, connect_failure
from dicomconf.scu.target import format_hostport, resolve_within
from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRJ, AReleaseRP, AReleaseRQ

DEFAULT_CALLING_AE = "DICOMCONF-SCU"
OUR_MAX_PDU_LENGTH = 16382  # our Maximum Length (PS3.8 D.1): what we receive


class Unreachable(Exception):
    """The target cannot be reached, or does not answer an A-ASSOCIATE-RQ (one sentence)."""


@dataclass
class Outcome:
    """What one A-ASSOCIATE-RQ brought back (PS3.8 9.3.3, 9.3.4, 9.3.8).

    ``kind`` is "accepted", "rejected", "aborted", "silence", "closed",
    "unexpected" or "unconnected" (the connection could not be made).
    """

    kind: str
    ac: AAssociateAC | None = None
    rj: AAssociateRJ | None = None
    abort: AAbort | None = None
    error: str = ""
    answered_at: float | None = None
    released: bool = False

    @property
    def accepted(self) -> bool:
        return self.kind == "accepted"

    @property
    def rj_triple(self) -> tuple[int, int, int] | None:
        return (self.rj.result, self.rj.source, self.rj.reason) if self.rj is not None else None

    def describe(self) -> str:
        """A short account for a comment: "accepted", "rejected (1, 1, 7) called-AE-title-not-recognized"."""
        if self.kind == "accepted":
            return "accepted"
        if self.kind == "rejected" and self.rj is not None:
            return f"rejected {rj_text(self.rj)}"
        if self.kind == "aborted" and self.abort is not None:
            return f"answered with A-ABORT (source {self.abort.source}, reason {self.abort.reason})"
        return self.error or self.kind


def rj_text(rj: AAssociateRJ) -> str:
    """``(1, 1, 7) called-AE-title-not-recognized`` for an A-ASSOCIATE-RJ (PS3.8 Table 9-21)."""
    reason = C.RJ_REASON_NAMES.get((rj.source, rj.reason), "reason not defined")
    return f"({rj.result}, {rj.source}, {rj.reason}) {reason}"


@dataclass
class Session:
    """The target and everything a probe step needs to talk to it; counts what it opens."""

    host: str
    port: int
    called_ae: str
    calling_ae: str = DEFAULT_CALLING_AE
    timeout: float = 10.0
    tls_port: int | None = None
    tls: ssl.SSLContext | None = None
    identity: Mapping[str, Any] | None = None  # sent in every RQ that names none (a target may require one)
    connections: int = 0
    associations: int = 0

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)

    # ------------------------------------------------------------ connections

    def connect(self, *, tls: bool = False, context: ssl.SSLContext | None = None) -> Connection:
        """A new TCP connection (TLS on ``tls_port`` when ``tls``, PS3.15 B.1); counted."""
        self.connections += 1
        if tls:
            return Connection.open(self.host, self.tls_port, tls=context or self.tls, timeout=self.timeout)
        return Connection.open(self.host, self.port, timeout=self.timeout)

    def scu(self, connection: Connection, *, called_ae: str | None = None, calling_ae: str | None = None) -> SCU:
        return SCU(
            connection,
            calling_ae=self.calling_ae if calling_ae is None else calling_ae,
            called_ae=self.called_ae if called_ae is None else called_ae,
            max_pdu_length=OUR_MAX_PDU_LENGTH,
        )

    # ------------------------------------------------------------ associations

    def request(
        self,
        connection: Connection,
        contexts: Iterable[Any] = ("verification",),
        *,
        called_ae: str | None = None,
        calling_ae: str | None = None,
        roles: Mapping[str, tuple[int, int]] | None = None,
        user_identity: Any = None,
        async_window: tuple[int, int] | None = None,
        timeout: float | None = None,
    ) -> tuple[Outcome, SCU]:
        """Send one A-ASSOCIATE-RQ on ``connection`` and classify the answer (PS3.8 7.1).

        An accepted association is left open (the caller releases it with
        :meth:`finish`); anything else leaves the connection closed.  ``timeout``
        bounds the wait for the answer (default: the session's).
        """
        timeout = self.timeout if timeout is None else timeout
        scu = self.scu(connection, called_ae=called_ae, calling_ae=calling_ae)
        self.associations += 1
        try:
            ac = scu.associate(
                list(contexts),
                roles=roles,
                user_identity=self.identity if user_identity is None else user_identity,
                async_window=async_window,
                timeout=timeout,
            )
        except Rejected as exc:
            return Outcome("rejected", rj=exc.pdu), scu
        except Aborted as exc:
            return Outcome("aborted", abort=exc.pdu), scu
        except Silence:
            connection.reset()
            return Outcome("silence", error=f"no A-ASSOCIATE-AC or -RJ within {timeout:g} s"), scu
        except Closed as exc:
            connection.close()
            return Outcome("closed", error=f"connection {exc.kind} by the target without an answer"), scu
        except (UnexpectedReply, RemoteProtocolError) as exc:
            connection.reset()
            return Outcome("unexpected", error=f"unexpected answer: {exc}"), scu
        except OSError as exc:
            connection.reset()
            return Outcome("unexpected", error=f"connection failed: {exc}"), scu
        at = scu.last_received.at if scu.last_received is not None else time.monotonic()
        return Outcome("accepted", ac=ac, answered_at=at), scu

    def finish(self, scu: SCU, outcome: Outcome | None = None) -> None:
        """Release an accepted association and close the socket; abort it if the release fails."""
        try:
            scu.release(timeout=self.timeout)
            if outcome is not None:
                outcome.released = True
        except (Silence, Closed, Aborted, UnexpectedReply, RemoteProtocolError, OSError):
            try:
                scu.abort()
            except (Closed, OSError):
                pass
        finally:
            scu.connection.close()

    def try_associate(self, contexts: Iterable[Any] = ("verification",), *, tls: bool = False,
                      context: ssl.SSLContext | None = None, **kwargs: Any) -> Outcome:
        """Open, ask for one association, release it if accepted, close: the answer (never raises)."""
        try:
            connection = self.connect(tls=tls, context=context)
        except (OSError, ValueError) as exc:
            return Outcome("unconnected", error=connection_failure(exc, self.timeout))
        try:
            outcome, scu = self.request(connection, contexts, **kwargs)
            if outcome.accepted:
                self.finish(scu, outcome)
            return outcome
        finally:
            connection.close()


def connection_failure(exc: BaseException, timeout: float) -> str:
    """Why a connection could not be made, in a few words (:func:`dicomconf.scu.connection.connect_failure`)."""
    return f"the target {connect_failure(exc, timeout)[1]}"


def resolve(host: str, port: int, timeout: float) -> None:
    """Raise :class:`Unreachable` when ``host`` does not resolve within ``timeout`` seconds."""
    why = resolve_within(host, port, timeout)
    if why is not None:
        raise Unreachable(f"{host}: {why}")


def reachable(session: Session) -> None:
    """Raise :class:`Unreachable` unless the target's host name resolves (bounded by the session's timeout).

    Whether its port answers is the first association's question
    (:func:`dicomconf.probe.probe.probe_baseline`).
    """
    resolve(session.host, session.port, session.timeout)


def wait_for_end(connection: Connection, bound: float) -> tuple[str, float] | None:
    """Wait up to ``bound`` seconds for the target to end the association or connection.

    Returns (what happened, when) — "A-ABORT", "A-RELEASE-RQ" (answered with
    an A-RELEASE-RP, PS3.8 7.2), "closed" or "reset" — or None if nothing
    happened in time.  Other PDUs are passed over (kept in the connection's
    ``passed_over``); a target that keeps sending them does not extend the
    wait past ``bound`` (PS3.8 9.1.5: the harness's own timer).
    """
    deadline = time.monotonic() + bound
    while True:
        try:
            received = connection.receive_pdu(max(deadline - time.monotonic(), 0.0))
        except Silence:
            return None
        except Closed as exc:
            return exc.kind, exc.at
        if isinstance(received.pdu, AAbort):
            return "A-ABORT", received.at
        if isinstance(received.pdu, AReleaseRQ):
            try:
                connection.send(AReleaseRP())
            except (Closed, OSError):
                pass
            return "A-RELEASE-RQ", received.at
        connection.passed_over.append(received)
        if time.monotonic() >= deadline:  # other PDUs kept coming: they do not extend the wait
            return None


__all__ = ["Session", "Outcome", "Unreachable", "reachable", "resolve", "rj_text", "wait_for_end",
           "connection_failure", "DEFAULT_CALLING_AE"]
