"""What ``dicomconf probe`` asks the target, one function per profile field.

Theory of operation
-------------------
Each ``probe_*`` function asks the target one question through a
:class:`~dicomconf.probe.session.Session` (one or a few gentle
associations, each released and closed at once) and returns a
:class:`Finding`: the value for the profile and, in words, how it was found
(the profile's comment).  What could not be found is ``None`` with the reason.
:func:`run_probe` calls them in a fixed order and gathers the findings into
a :class:`ProbeResult` in the order of the profile format
(``dicomconf/scenario/profile.schema.json``); :mod:`dicomconf.probe.writer`
turns that into commented YAML.

The gentle part asks, in this order (the numbers are associations):
the first association, Verification, with a C-ECHO (1); an unknown called
AE title and, if it is refused, the called AE title in another case (1-2);
the same for the calling AE title (1-2); every SOP class of
:data:`SOP_CLASSES` with every transfer syntax of :data:`TRANSFER_SYNTAXES`,
one presentation context per pair, at most 128 per request (PS3.8 9.3.2.2)
(3); role selection for the storage classes accepted, and for those refused
only with user-rejection, which a target answers when it will not let the
requestor be their SCU (1); the asynchronous operations window (1); user
identity (1, or 2 with a user to check); TLS on ``--tls-port`` (1, or 2 with
a client certificate).  That is at most 14
associations.  ``--limits`` then holds up to ``--limit-max`` associations at
once, and ``--timers`` opens two more connections that wait for the
target's timers (PS3.8 9.1.5): those are slow or disruptive and run only
when asked.
"""

from __future__ import annotations

import functools
import secrets
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pydicom.uid import UID

from dicomconf.probe.session import (
    Outcome,
    Session,
    Unreachable,
    connection_failure,
    wait_for_end,
)
from dicomconf.scu.client import CONTEXT_ALIASES, Aborted, UnexpectedReply, resolve_uid
from dicomconf.scu.connection import Closed, Silence
from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import PresentationContextRQ
from dicomconf.ul.negotiation import (
    COMPRESSED_TRANSFER_SYNTAXES,
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    default_supported,
)

# The SOP classes asked about: every short name the scenarios may use, and the Patient Root
# retrieve models, which have no short name.
SOP_CLASSES: tuple[str, ...] = (
    *CONTEXT_ALIASES,
    "PatientRootQueryRetrieveInformationModelMove",
    "PatientRootQueryRetrieveInformationModelGet",
)
TRANSFER_SYNTAXES: tuple[str, ...] = UNCOMPRESSED_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES
UNKNOWN_AE = "NOT-KNOWN-AE"
LIMIT_SILENCE = 3.0  # seconds an extra association may stay unanswered before it counts as refused
SETTLE = 1.0  # seconds for the target to forget the associations just released, before --limits
GENTLE_MAX = 14  # associations of a probe without --limits and --timers (the docstring's count)


class NotAccepted(Exception):
    """The target answers but refuses the first association: nothing else can be asked."""


@dataclass
class Finding:
    """A profile value and how it was found.

    ``items`` holds a comment per list element or mapping key; ``notes``
    are comment lines written after the value.
    """

    value: Any
    how: str
    items: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Section:
    """A nested mapping of the profile (``timers``, ``tls``, ``target``)."""

    fields: dict[str, Finding]
    how: str = ""


@dataclass
class TLSOptions:
    """The TLS client settings given on the command line (PS3.15 B.1)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    context: Callable[[bool], ssl.SSLContext] | None = None  # with_client_cert -> context


@dataclass
class ProbeOptions:
    """What to ask beyond the gentle part, and what the user gave (a user to check, TLS settings)."""

    limits: bool = False
    limit_max: int = 16
    timers: bool = False
    timer_max: float = 120.0
    user: tuple[str, str | None] | None = None
    tls: TLSOptions = field(default_factory=TLSOptions)


@dataclass
class ProbeResult:
    """The findings in profile order, and the header comment lines."""

    fields: dict[str, Finding | Section]
    header: list[str]


def short_name(uid: str) -> str:
    """The scenario name of a SOP class (``ct``) or transfer syntax, else its pydicom keyword, else the UID."""
    for alias, keyword in CONTEXT_ALIASES.items():
        if resolve_uid(keyword) == uid:
            return alias
    return UID(uid).keyword or uid


def _list(names: list[str], limit: int = 6) -> str:
    return ", ".join(names) if len(names) <= limit else ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _seconds(value: float) -> float | int:
    """A measured time for the profile: to the nearest half second (timers are not more precise than that)."""
    rounded = round(value * 2) / 2
    return int(rounded) if rounded == int(rounded) else rounded


# ---------------------------------------------------------------- the first association


@dataclass
class Baseline:
    ac: Any
    echo: str


def probe_baseline(session: Session) -> Baseline:
    """The first association: Verification, a C-ECHO, release (PS3.8 7.1, PS3.7 9.1.5).

    Raises :class:`Unreachable` when no connection or no answer comes, and
    :class:`NotAccepted` when the target refuses it.
    """
    try:
        connection = session.connect()
    except (OSError, ValueError) as exc:
        raise Unreachable(f"{session.address}: {connection_failure(exc, session.timeout)}") from None
    try:
        outcome, scu = session.request(connection, ["verification"])
        if outcome.kind in ("silence", "closed", "unexpected"):
            raise Unreachable(f"{session.address}: {outcome.describe()}")
        if not outcome.accepted:
            raise NotAccepted(_refusal_advice(session, outcome))
        echo = "not tried: Verification was not accepted"
        if any(a == C.VERIFICATION_SOP_CLASS for a, _t in scu.accepted.values()):
            try:
                echo = f"C-ECHO status {scu.echo(timeout=session.timeout):04X}H"
            except (Silence, Closed, Aborted, UnexpectedReply, RemoteProtocolError, OSError) as exc:
                echo = f"C-ECHO failed: {exc}"
        session.finish(scu, outcome)
        return Baseline(outcome.ac, echo)
    finally:
        connection.close()


def _refusal_advice(session: Session, outcome: Outcome) -> str:
    text = f"{session.address} refused the first association (called {session.called_ae!r}, calling " \
           f"{session.calling_ae!r}): {outcome.describe()}"
    triple = outcome.rj_triple
    if triple is not None and triple[1:] == (C.RJ_SOURCE_USER, C.RJ_USER_CALLED_AE_NOT_RECOGNIZED):
        return text + "; give the target's own AE title with --called-ae"
    if triple is not None and triple[1:] == (C.RJ_SOURCE_USER, C.RJ_USER_CALLING_AE_NOT_RECOGNIZED):
        return text + "; give a calling AE title the target knows with --calling-ae"
    if triple is not None and triple[0] == C.RJ_RESULT_TRANSIENT:
        return text + "; the target is busy: try again later"
    return text + "; if the target requires user identity, give one with --user"


def probe_identity(baseline: Baseline, session: Session) -> dict[str, Finding]:
    """``name``, ``ae_title``, ``calling_ae`` and ``max_pdu_length`` from the first A-ASSOCIATE-AC (PS3.8 D.1, PS3.7 D.3.3.2)."""
    ui = baseline.ac.user_information
    uid, version = ui.implementation_class_uid, ui.implementation_version_name
    parts = [f"Implementation Class UID {uid}" if uid else "no Implementation Class UID",
             f"Implementation Version Name {version}" if version else "no Implementation Version Name"]
    name = f"{version} at {session.address}" if version else f"target at {session.address}"
    length = ui.maximum_length
    if length is None:
        max_pdu = Finding(None, "the A-ASSOCIATE-AC has no Maximum Length sub-item (PS3.8 D.1)")
    else:
        max_pdu = Finding(length, "Maximum Length sub-item (51H) of the A-ASSOCIATE-AC (PS3.8 D.1)"
                          + ("; 0 means unlimited" if length == 0 else ""))
    return {
        "name": Finding(name, f"{' and '.join(parts)} in the A-ASSOCIATE-AC (PS3.7 D.3.3.2)"),
        "ae_title": Finding(session.called_ae, f"--called-ae; the first association was accepted ({baseline.echo})"),
        "calling_ae": Finding(session.calling_ae, "the calling AE title of every association of this probe"),
        "max_pdu_length": max_pdu,
    }


# ---------------------------------------------------------------- AE titles


def _other_case(title: str) -> str | None:
    other = title.lower() if title != title.lower() else title.upper()
    return None if other == title else other


def _refused(outcome: Outcome) -> bool:
    return outcome.kind in ("rejected", "aborted", "closed")


def probe_ae_check(session: Session, which: str, unknown: str) -> Finding:
    """Whether an unknown called / calling AE title is refused, and whether case matters (PS3.8 7.1.1.3, 9.3.4)."""
    own = session.called_ae if which == "called" else session.calling_ae
    outcome = session.try_associate(["verification"], **{f"{which}_ae": unknown})
    said = f'an A-ASSOCIATE-RQ {which} "{unknown}" was {outcome.describe()}'
    if outcome.accepted:
        return Finding(False, said)
    if not _refused(outcome):
        return Finding(False, f"not found ({said}); false claims nothing")
    other = _other_case(own)
    if other is None:
        return Finding(True, f"{said}; case not tried (no letters in {own!r})")
    again = session.try_associate(["verification"], **{f"{which}_ae": other})
    if again.accepted:
        case = f'"{other}" (another case) was accepted: case does not matter'
    elif _refused(again):
        case = f'"{other}" (another case) was {again.describe()}: case matters'
    else:
        case = f'"{other}" (another case): {again.describe()}'
    return Finding(True, f"{said}; {case}")


# ---------------------------------------------------------------- SOP classes, transfer syntaxes, roles


@dataclass
class Matrix:
    """The answer to every (SOP class, transfer syntax) context: its result (PS3.8 Table 9-18), or absent."""

    pairs: list[tuple[str, str]]
    results: dict[tuple[str, str], int]
    failures: list[str]
    requests: int

    def accepted(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for pair in self.pairs:
            if self.results.get(pair) == C.PC_ACCEPTANCE:
                out[pair[0]] = out.get(pair[0], ()) + (pair[1],)
        return out

    def role_rejected(self) -> dict[str, tuple[str, ...]]:
        """Storage SOP classes never accepted but rejected with user-rejection (1) for some transfer syntaxes:
        a target that does not let the requestor be SCU of them answers so (PS3.7 D.3.3.4)."""
        accepted = self.accepted()
        out: dict[str, tuple[str, ...]] = {}
        for uid, ts in self.pairs:
            if uid not in accepted and _is_storage(uid) and self.results.get((uid, ts)) == C.PC_USER_REJECTION:
                out[uid] = out.get(uid, ()) + (ts,)
        return out


def probe_matrix(session: Session) -> Matrix:
    """Every SOP class of :data:`SOP_CLASSES` with every transfer syntax, one context per pair, at most 128
    contexts per A-ASSOCIATE-RQ (PS3.8 9.3.2.2, 9.3.3.2)."""
    pairs = [(resolve_uid(name), ts) for name in SOP_CLASSES for ts in TRANSFER_SYNTAXES]
    results: dict[tuple[str, str], int] = {}
    failures: list[str] = []
    per_rq = C.MAX_PRESENTATION_CONTEXTS
    for start in range(0, len(pairs), per_rq):
        chunk = pairs[start : start + per_rq]
        contexts = [PresentationContextRQ(2 * i + 1, uid, (ts,)) for i, (uid, ts) in enumerate(chunk)]
        outcome = session.try_associate(contexts)
        if not outcome.accepted:
            failures.append(f"the request with contexts {start + 1}-{start + len(chunk)} was {outcome.describe()}")
            continue
        for pc in outcome.ac.presentation_contexts:
            index = (pc.context_id - 1) // 2
            if pc.context_id % 2 == 1 and index < len(chunk):
                results[chunk[index]] = pc.result
    return Matrix(pairs, results, failures, (len(pairs) + per_rq - 1) // per_rq)


def contexts_findings(matrix: Matrix, role_only: dict[str, tuple[str, ...]]) -> tuple[Finding, Finding]:
    """``sop_classes`` and ``transfer_syntaxes`` from the matrix and the classes accepted only with roles.

    ``transfer_syntaxes`` are those accepted with every accepted storage SOP
    class (with every accepted SOP class when no storage class is).
    """
    accepted = {**matrix.accepted(), **role_only}
    accepted = {uid: accepted[uid] for uid in dict.fromkeys(u for u, _t in matrix.pairs) if uid in accepted}
    sop_items: dict[str, str] = {}
    for uid, syntaxes in accepted.items():
        how = "accepted only with SCU/SCP role selection (see roles), " if uid in role_only else "accepted "
        sop_items[short_name(uid)] = f"{how}with {len(syntaxes)} of {len(TRANSFER_SYNTAXES)} transfer " \
                                     f"syntaxes: {_list([short_name(t) for t in syntaxes])}"
    refused: dict[str, set[int]] = {}
    for (uid, _ts), result in matrix.results.items():
        if result != C.PC_ACCEPTANCE:
            refused.setdefault(uid, set()).add(result)
    by_reason: dict[str, list[str]] = {}
    for uid in dict.fromkeys(u for u, _t in matrix.pairs):
        if uid in accepted:
            continue
        if uid in refused:
            why = "not accepted, " + " / ".join(_RESULT_WORDS.get(r, f"result {r}") for r in sorted(refused[uid]))
        else:
            why = "not known, no answer for its contexts"
        by_reason.setdefault(why, []).append(short_name(uid))
    notes = [f"{why}: {', '.join(names)}" for why, names in by_reason.items()] + matrix.failures
    asked = f"{len(matrix.pairs)} presentation contexts ({len(SOP_CLASSES)} SOP classes x " \
            f"{len(TRANSFER_SYNTAXES)} transfer syntaxes, one each) in {matrix.requests} A-ASSOCIATE-RQs"
    sop = Finding([short_name(u) for u in accepted], f"accepted as SCP, from {asked}", sop_items, notes)
    storage = [u for u in accepted if _is_storage(u)]
    kind = "storage SOP class" if storage else "SOP class"
    storage = storage or list(accepted)
    common = [t for t in TRANSFER_SYNTAXES if storage and all(t in accepted[u] for u in storage)]
    ts_items = {short_name(t): f"accepted with every {kind} above ({len(storage)})" for t in common}
    ts_notes = []
    for uid, syntaxes in accepted.items():
        extra = [short_name(t) for t in syntaxes if t not in common]
        if extra:
            ts_notes.append(f"{short_name(uid)} also accepts {_list(extra)}")
    ts = Finding([short_name(t) for t in common], f"transfer syntaxes accepted for every supported {kind}",
                 ts_items, ts_notes)
    return sop, ts


_RESULT_WORDS = {
    C.PC_USER_REJECTION: "user-rejection (1)",
    C.PC_NO_REASON: "no-reason (2)",
    C.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract-syntax-not-supported (3)",
    C.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer-syntaxes-not-supported (4)",
}


def _is_storage(uid: str) -> bool:
    """A Storage SOP class (PS3.4 B.5): one the core's default negotiation takes as such, Verification aside."""
    return uid != C.VERIFICATION_SOP_CLASS and uid in _storage_classes()


@functools.lru_cache(maxsize=1)
def _storage_classes() -> frozenset[str]:
    return frozenset(default_supported())


def probe_roles(session: Session, matrix: Matrix) -> tuple[Finding, dict[str, tuple[str, ...]]]:
    """Role selection SCU 1, SCP 1 proposed for each storage SOP class accepted, or refused with
    user-rejection (1); the answers (PS3.7 D.3.3.4).

    An accepted class is proposed in one context with the transfer syntaxes
    it was accepted with; a class refused with user-rejection in one context
    per such transfer syntax.  Returns the ``roles`` finding and, per class
    that is accepted only with role selection, the transfer syntaxes it was
    then accepted with.
    """
    accepted = {uid: ts for uid, ts in matrix.accepted().items() if _is_storage(uid)}
    role_rejected = matrix.role_rejected()
    if not accepted and not role_rejected:
        return Finding({}, "no storage SOP class was accepted: no role selection asked"), {}
    contexts: list[PresentationContextRQ] = []
    for uid, syntaxes in accepted.items():
        contexts.append(PresentationContextRQ(2 * len(contexts) + 1, uid, syntaxes))
    for uid, syntaxes in role_rejected.items():
        for ts in syntaxes:
            contexts.append(PresentationContextRQ(2 * len(contexts) + 1, uid, (ts,)))
    notes = []
    if len(contexts) > C.MAX_PRESENTATION_CONTEXTS:
        notes.append(f"{len(contexts) - C.MAX_PRESENTATION_CONTEXTS} contexts left out (128 at most)")
        contexts = contexts[: C.MAX_PRESENTATION_CONTEXTS]
    classes = list(dict.fromkeys(pc.abstract_syntax for pc in contexts))
    outcome = session.try_associate(contexts, roles={uid: (1, 1) for uid in classes})
    if not outcome.accepted:
        return Finding({}, f"not found: the A-ASSOCIATE-RQ proposing SCU and SCP roles was {outcome.describe()}"), {}
    answers = {item.sop_class_uid: item for item in outcome.ac.user_information.role_selections}
    results = {pc.context_id: pc.result for pc in outcome.ac.presentation_contexts}
    role_only: dict[str, tuple[str, ...]] = {}
    for pc in contexts:
        if pc.abstract_syntax in role_rejected and results.get(pc.context_id) == C.PC_ACCEPTANCE:
            role_only[pc.abstract_syntax] = role_only.get(pc.abstract_syntax, ()) + pc.transfer_syntaxes
    value: dict[str, list[str]] = {}
    items: dict[str, str] = {}
    silent = []
    for uid in classes:
        name = short_name(uid)
        item = answers.get(uid)
        if item is None:
            silent.append(name)
            continue
        value[name] = [r for r, v in (("scu", item.scu_role), ("scp", item.scp_role)) if v == 1]
        taken = [results.get(pc.context_id) for pc in contexts if pc.abstract_syntax == uid]
        context = "" if C.PC_ACCEPTANCE in taken else "; its contexts were not accepted"
        items[name] = f"answered SCU-role {item.scu_role}, SCP-role {item.scp_role}{context}"
    if silent:
        notes.append(f"no role selection item came back for {_list(silent, 8)}: default roles, "
                     "the requestor is SCU only (PS3.7 D.3.3.4)")
    return Finding(value, "an A-ASSOCIATE-RQ proposed SCU-role 1 and SCP-role 1 for each storage SOP class "
                   "(PS3.7 D.3.3.4)", items, notes), role_only


def probe_async_window(session: Session) -> Finding:
    """The window answered to a proposal of 0 and 0, unlimited (PS3.7 D.3.3.3)."""
    outcome = session.try_associate(["verification"], async_window=(0, 0))
    if not outcome.accepted:
        return Finding(None, f"not found: the A-ASSOCIATE-RQ proposing a window was {outcome.describe()}")
    window = outcome.ac.user_information.asynchronous_operations_window
    if window is None:
        return Finding(None, "no Asynchronous Operations Window sub-item (53H) came back to a proposal of 0, 0: "
                             "the target uses the default 1, 1 (PS3.7 D.3.3.3)")
    pair = [window.maximum_number_operations_invoked, window.maximum_number_operations_performed]
    return Finding(pair, f"sub-item 53H answered {pair[0]}, {pair[1]} to a proposal of 0, 0 (unlimited) (PS3.7 D.3.3.3)")


def probe_user_identity(session: Session, user: tuple[str, str | None] | None) -> tuple[Finding, Finding]:
    """Whether an unknown user is refused, and whether a 59H comes back when asked (PS3.7 D.3.3.7)."""
    name = f"dicomconf-probe-{secrets.token_hex(4)}"
    bogus = {"type": C.USER_IDENTITY_USERNAME_PASSCODE, "primary": name, "secondary": secrets.token_hex(8),
             "positive_response": True}
    outcome = session.try_associate(["verification"], user_identity=bogus)
    said = "an A-ASSOCIATE-RQ with an unknown user name and passcode (type 2, positive response requested) was"
    if outcome.accepted:
        response = outcome.ac.user_information.user_identity_response
        if response is not None:
            found = Finding(False, f"{said} accepted with a User Identity sub-item (59H): the target answers "
                                   "identities without checking them")
        else:
            found = Finding(False, f"{said} accepted without a User Identity sub-item (59H): identity is ignored")
    elif _refused(outcome):
        found = Finding(True, f"{said} {outcome.describe()}: the target checks user identity")
    else:
        found = Finding(False, f"not found ({said} {outcome.describe()}); false claims nothing")
    if user is None:
        return found, Finding(None, "cannot be probed: the target's users are its own; give one with "
                                    "--user NAME:PASSCODE to have it checked")
    username, passcode = user
    spec = {"type": C.USER_IDENTITY_USERNAME_PASSCODE if passcode is not None else C.USER_IDENTITY_USERNAME,
            "primary": username, "secondary": passcode or "", "positive_response": True}
    given = session.try_associate(["verification"], user_identity=spec)
    if not given.accepted:
        return found, Finding(None, f"the user given with --user was {given.describe()}")
    response = given.ac.user_information.user_identity_response
    came = "a User Identity sub-item (59H) came back" if response is not None else \
        "no User Identity sub-item (59H) came back although a positive response was requested"
    return found, Finding({username: passcode}, f"--user was accepted (type {spec['type']}, positive response "
                                                f"requested); {came} (PS3.7 D.3.3.7)",
                          {username: "--user" if passcode is None else "--user (user name and passcode)"})


# ---------------------------------------------------------------- TLS


def probe_tls(session: Session, tls: TLSOptions) -> Section:
    """A TLS handshake and an association on ``--tls-port`` (PS3.15 B.1)."""
    if session.tls_port is None:
        return Section({"enabled": Finding(False, "not probed: no --tls-port given")}, _TLS)
    port = session.tls_port
    outcome = session.try_associate(["verification"], tls=True)
    fields: dict[str, Finding] = {}
    if outcome.accepted:
        verified = "certificate not verified (--tls-insecure)" if tls.insecure else "certificate chain and host name verified"
        fields["enabled"] = Finding(True, f"TLS handshake on port {port} ({verified}) and an association over it")
    else:
        fields["enabled"] = Finding(False, f"TLS on port {port} did not work: {outcome.describe()}")
    fields["port"] = Finding(port, "--tls-port (the same as target.tls_port)")
    for key in ("ca", "cert", "key"):
        value = getattr(tls, key)
        if value is not None:
            fields[key] = Finding(value, f"--tls-{key}")
    if tls.insecure:
        fields["insecure"] = Finding(True, "--tls-insecure: the target's certificate is not verified")
    if outcome.accepted and tls.cert and tls.context is not None:
        bare = session.try_associate(["verification"], tls=True, context=tls.context(False))
        if bare.accepted:
            fields["client_cert_required"] = Finding(False, "an association without a client certificate was accepted")
        else:
            fields["client_cert_required"] = Finding(True, f"without a client certificate: {bare.describe()}")
    elif outcome.accepted:
        fields["client_cert_required"] = Finding(False, "associated without a client certificate")
    return Section(fields, _TLS)


_TLS = "DICOM over TLS (PS3.15 B.1)"


# ---------------------------------------------------------------- disruptive and slow


def probe_limit(session: Session, limit_max: int) -> Finding:
    """Hold one more association at a time until one is refused, then release all (PS3.8 Table 9-21 (2, 3, 2))."""
    time.sleep(SETTLE)
    held = []
    stop = None
    wait = min(session.timeout, LIMIT_SILENCE)
    try:
        for attempt in range(1, limit_max + 1):
            try:
                connection = session.connect()
            except (OSError, ValueError) as exc:
                stop = f"could not connect: {connection_failure(exc, session.timeout)}"
                break
            outcome, scu = session.request(connection, ["verification"], timeout=wait)
            if not outcome.accepted:
                connection.close()
                stop = f"was {outcome.describe()}" if outcome.kind in ("rejected", "aborted") else \
                    f"got {outcome.describe()}"
                break
            held.append(scu)
            lost = [i + 1 for i, h in enumerate(held[:-1]) if not _alive(h)]
            if lost:
                return Finding(None, f"not found: association(s) {_list([str(i) for i in lost])} held open ended "
                                     f"while association {attempt} was asked for")
    finally:
        for scu in reversed(held):
            session.finish(scu)
    count = len(held)
    if stop is None:
        return Finding(None, f"--limits: {count} associations held at once were all accepted: no limit up to "
                             f"--limit-max {limit_max}")
    if count == 0:
        return Finding(None, f"not found: the first request of --limits {stop}")
    return Finding(count, f"--limits: {count} association{'s' if count > 1 else ''} held at once; the request "
                          f"for association {count + 1} {stop}")


def _alive(scu) -> bool:
    try:
        scu.connection.receive_pdu(0)
    except Silence:
        return True
    except (Closed, OSError):
        return False
    return False


def probe_artim(session: Session, bound: float) -> Finding:
    """Connect and send nothing: the time until the target closes is its ARTIM timeout (PS3.8 9.1.5, Sta2)."""
    try:
        connection = session.connect()
    except (OSError, ValueError) as exc:
        return Finding(None, f"not measured: {connection_failure(exc, session.timeout)}")
    start = time.monotonic()
    try:
        end = wait_for_end(connection, bound)
    finally:
        connection.close()
    if end is None:
        return Finding(None, f"--timers: a connection with nothing sent was still open after {bound:g} s: "
                             "no ARTIM timer, or a longer one")
    kind, at = end
    return Finding(_seconds(at - start), f"--timers: a connection with nothing sent was {kind} after "
                                         f"{at - start:.2f} s (PS3.8 9.1.5)")


def probe_idle(session: Session, bound: float) -> Finding:
    """Associate and stay silent: the time until the target ends the association (PS3.8 9.1.5)."""
    try:
        connection = session.connect()
    except (OSError, ValueError) as exc:
        return Finding(None, f"not measured: {connection_failure(exc, session.timeout)}")
    try:
        outcome, scu = session.request(connection, ["verification"])
        if not outcome.accepted:
            return Finding(None, f"not measured: the association was {outcome.describe()}")
        end = wait_for_end(connection, bound)
        if end is None:
            session.finish(scu)
            return Finding(None, f"--timers: an idle association was still open after {bound:g} s: "
                                 "no idle timer, or a longer one")
        kind, at = end
        waited = at - (outcome.answered_at or at)
        what = {"A-ABORT": "aborted", "A-RELEASE-RQ": "released by the target"}.get(kind, kind)
        return Finding(_seconds(waited), f"--timers: an idle association was {what} {waited:.2f} s after the "
                                         "A-ASSOCIATE-AC")
    finally:
        connection.close()


# ---------------------------------------------------------------- all of it


def _unknown_ae(session: Session) -> str:
    taken = {session.called_ae.strip(), session.calling_ae.strip()}
    return next(t for t in (UNKNOWN_AE, "NOT-KNOWN-AE-2", "NOT-KNOWN-AE-3") if t not in taken)


def run_probe(session: Session, options: ProbeOptions, *, when: str = "",
              progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Ask everything, in the order of the module docstring; return the findings in profile order.

    ``progress`` is told, in a sentence, when a slow or disruptive step starts.
    """
    say = progress or (lambda _text: None)
    baseline = probe_baseline(session)
    found = probe_identity(baseline, session)
    unknown = _unknown_ae(session)
    called = probe_ae_check(session, "called", unknown)
    calling = probe_ae_check(session, "calling", unknown)
    matrix = probe_matrix(session)
    roles, role_only = probe_roles(session, matrix)
    sop, ts = contexts_findings(matrix, role_only)
    window = probe_async_window(session)
    identity, users = probe_user_identity(session, options.user)
    tls = probe_tls(session, options.tls)
    gentle = session.associations
    if options.limits:
        say(f"--limits: holding up to {options.limit_max} associations at once")
        limit = probe_limit(session, options.limit_max)
    else:
        limit = Finding(None, "not probed: --limits (disruptive: holds up to --limit-max associations at once)")
    if options.timers:
        say(f"--timers: waiting up to {options.timer_max:g} s for each of the ARTIM and idle timers")
        artim = probe_artim(session, options.timer_max)
        idle = probe_idle(session, options.timer_max)
    else:
        artim = Finding(None, "not measured: --timers (slow: waits for the target's ARTIM timer)")
        idle = Finding(None, "not measured: --timers (slow: waits for the target to end an idle association)")
    target = Section({
        "host": Finding(session.host, "--target"),
        "port": Finding(session.port, "--target"),
        "tls_port": Finding(session.tls_port, "--tls-port" if session.tls_port is not None else "no --tls-port given"),
    }, "where the target listens, as given")
    fields: dict[str, Finding | Section] = {
        "name": found["name"],
        "target": target,
        "ae_title": found["ae_title"],
        "calling_ae": found["calling_ae"],
        "unknown_ae": Finding(unknown, "the AE title tried as unknown below"),
        "checks_called_ae": called,
        "checks_calling_ae": calling,
        "timers": Section({"artim": artim, "idle": idle}, "seconds (PS3.8 9.1.5)"),
        "sop_classes": sop,
        "transfer_syntaxes": ts,
        "roles": roles,
        "max_associations": limit,
        "max_pdu_length": found["max_pdu_length"],
        "user_identity": identity,
        "users": users,
        "async_window": window,
        "tls": tls,
    }
    header = [
        f"Target profile written by `dicomconf probe`{' on ' + when if when else ''} for {session.address} "
        f"(called AE {session.called_ae!r}).",
        "Each value says how it was found; null means it could not be found, and why.",
        f"The probe made {session.associations} association requests over {session.connections} connections "
        f"({gentle} gentle{', then --limits' if options.limits else ''}"
        f"{', then --timers' if options.timers else ''}).",
    ]
    return ProbeResult(fields, header)


__all__ = [
    "Finding", "Section", "ProbeOptions", "ProbeResult", "TLSOptions", "NotAccepted", "Unreachable",
    "SOP_CLASSES", "TRANSFER_SYNTAXES", "GENTLE_MAX", "run_probe", "short_name",
    "probe_baseline", "probe_identity", "probe_ae_check", "probe_matrix", "contexts_findings", "probe_roles", "probe_async_window",
    "probe_user_identity", "probe_tls", "probe_limit", "probe_artim", "probe_idle",
]
