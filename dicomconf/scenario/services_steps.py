"""Scenario steps for a target's Query/Retrieve, Storage Commitment and MPPS (PS3.4 C, J, F.7; PS3.7 9, 10).

Theory of operation
-------------------
:class:`ServiceSteps` is mixed into the requestor's
:class:`~dicomconf.scenario.requestor.Runner`: each ``_step_<kind>`` runs one
operation with :mod:`dicomconf.scu.services` on the SCU of its connection and
checks what came against what the step states.  The steps:

* ``store_set``: C-STORE the known data set (:mod:`dicomconf.scenario.qr_data`),
  or its ``studies``; each answer must be 0000 or Bxxx (PS3.4 B.2.3).  Against
  the run's embedded reference SCP alone (``held`` is set for it, never for a
  named target), an instance it holds already, byte for byte as this C-STORE
  would send it (same SOP class, same transfer syntax, same data set), is not
  sent again: an earlier scenario of the run stored it and had its answer
  checked (:func:`holdings`);
* ``find``: C-FIND with ``model``, ``level``, ``keys``; checks the final
  status, the number of ``matches``, identifiers that must be among them
  (``returns``), what each must fit (``each``) and the keys each holds
  (``keys_returned``, PS3.4 C.4.1.1.3.2); ``cancel_after`` sends a C-CANCEL;
* ``move`` and ``get``: C-MOVE to the harness's listener (or any
  ``destination``) and C-GET; the status, the sub-operation counts, what
  ``arrive``\\ d and whether it is element by element what was stored
  (``same_bytes``); the counts of the final response (``final_counts``) and
  of each pending one (``pending_counts``, PS3.4 C.4.2.3.1, C.4.3.3.1); a
  C-GET's ``cancel_after_stores`` cancels when a C-STORE sub-operation came;
* ``commit``: Storage Commitment N-ACTION and its N-EVENT-REPORT, on the
  same association or a new one to the listener (PS3.4 J.3.2, J.3.3);
  ``response_first`` fails a report that came before the N-ACTION-RSP;
* ``mpps``: N-CREATE / N-SET of a Performed Procedure Step (PS3.4 F.7.2).

A failure says what was expected and what came, with the clause.  The
listener (:mod:`dicomconf.scenario.move_listener`) is the one the run
shares (``listener``, the embedded target's) or one the scenario starts
from the profile's ``query_retrieve.move_destination`` and stops at its end.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, Callable

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.sequence import Sequence

from dicomconf.scenario.engine import STORE_WITHIN, ScenarioFailure, brief
from dicomconf.scenario.match import get_path, match
from dicomconf.scenario.model import Step
from dicomconf.services.commitment import COMMITMENT_SOP_INSTANCE  # the well-known instance (PS3.4 J.3.5)

FIND_WITHIN = 30.0
RETRIEVE_WITHIN = 60.0
REPORT_WITHIN = 30.0
ARRIVAL_GRACE = 2.0  # seconds the listener may take to show sub-operations the final C-MOVE-RSP counted
# Attributes a pending identifier may hold besides the requested keys (PS3.4 C.4.1.1.3.2, C.4.1.2.2.2)
ALWAYS_ALLOWED = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"})
_MODELS = {"patient": "patient-{op}", "study": "study-{op}"}
CANCEL = 0xFE00


def dataset_view(ds: Dataset | None) -> dict[str, Any]:
    """A data set as plain data for matching: keyword -> text, number, list (multi-valued) or list of mappings."""
    out: dict[str, Any] = {}
    for element in ds or ():
        if not element.keyword or element.tag.group == 0x0002:
            continue
        value = element.value
        if element.VR == "SQ":
            out[element.keyword] = [dataset_view(item) for item in value]
        elif element.VM > 1:
            out[element.keyword] = [v if isinstance(v, (int, float)) else str(v) for v in value]
        elif value is None or isinstance(value, (bytes, bytearray)):
            out[element.keyword] = "" if value is None else bytes(value).hex()
        else:
            out[element.keyword] = value if isinstance(value, (int, float)) else str(value)
    return out


def build_dataset(step: Step, values: Any, key: str) -> Dataset:
    """A data set from ``{keyword: value}`` (lists: several values; lists of mappings: a sequence; null or
    "": an empty key, PS3.4 C.2.2.2.3); non-ASCII text sets Specific Character Set ISO_IR 192."""
    ds = Dataset()
    unicode = False
    for keyword, value in (values or {}).items():
        if not tag_for_keyword(str(keyword)):
            raise step.error(f"{keyword!r} is not a DICOM keyword (PS3.6)", key, keyword)
        try:
            if dictionary_VR(keyword) == "SQ":
                items = value if isinstance(value, list) else [] if value in (None, "") else [value]
                setattr(ds, keyword, Sequence([build_dataset(step, item, key) for item in items]))
            else:
                setattr(ds, keyword, "" if value is None else value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise step.error(f"{keyword}: {exc}", key, keyword) from None
        texts = value if isinstance(value, list) else [value]
        unicode = unicode or any(isinstance(t, str) and not t.isascii() for t in texts)
    if unicode and "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def differences(want: Dataset, have: Dataset) -> list[str]:
    """Element by element, what differs between the data set stored and the one that arrived."""
    out = []
    a, b = dataset_view(want), dataset_view(have)
    for keyword in sorted(set(a) | set(b)):
        if keyword not in b:
            out.append(f"{keyword} missing")
        elif keyword not in a:
            out.append(f"{keyword} added")
        elif a[keyword] != b[keyword]:
            out.append(f"{keyword} {str(a[keyword])[:40]!r} became {str(b[keyword])[:40]!r}")
    return out


def holdings(storage: Any) -> Callable[[str], tuple[str, str, bytes] | None] | None:
    """For an in-process reference SCP's memory storage (:class:`dicomconf.scp.storage.MemoryStorage`):
    a function from a SOP Instance UID to what the storage holds of it now (SOP class, transfer
    syntax, data set bytes) or None; None for any other storage (``store_set`` then stores all)."""
    if getattr(storage, "kind", None) != "memory" or not isinstance(getattr(storage, "instances", None), list):
        return None

    def held(sop_instance_uid: str) -> tuple[str, str, bytes] | None:
        for instance in reversed(list(storage.instances)):  # a copy: the SCP's thread may be adding one
            if instance.sop_instance_uid == sop_instance_uid:
                return instance.sop_class_uid, instance.transfer_syntax, instance.data
        return None

    return held


@lru_cache(maxsize=64)
def _chosen_uids(studies: Any) -> tuple[str, ...]:
    """The SOP Instance UIDs ``store_set`` stores for ``studies`` (None: the whole set); ValueError as
    :func:`dicomconf.scenario.qr_data.instances` says."""
    from dicomconf.scenario import qr_data

    return tuple(i.uid for i in qr_data.instances(studies))


@lru_cache(maxsize=256)
def _known_encoded(sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """A known-set instance's data set as ``store_set`` sends it in ``transfer_syntax`` (made once)."""
    from dicomconf.scenario import qr_data

    instance = qr_data.by_uid(sop_instance_uid)
    if instance is None:
        raise LookupError(f"{sop_instance_uid} is not an instance of the known set")
    return qr_data.encoded(instance, transfer_syntax)


class ServiceSteps:
    """The service steps of the requestor's Runner; see the module docstring."""

    listener: Any = None  # a listener the run shares (set before run), else one of our own
    held: Callable[[str], tuple[str, str, bytes] | None] | None = None  # the embedded target's holdings only
    _own_listener: Any = None
    _listener_ready = False

    # ------------------------------------------------------------ common

    def _listener_for(self, step: Step) -> Any:
        if self.listener is None and self._own_listener is None:
            md = self.profile.query_retrieve.move_destination
            if md is None or not md.port:
                raise ScenarioFailure(step, "the harness has no move destination: the profile gives no "
                                      "query_retrieve.move_destination {ae_title, host, port}",
                                      expected="a move destination in the profile (docs/scenarios.md)")
            from dicomconf.scenario.move_listener import MoveListener

            try:
                self._own_listener = MoveListener(md.ae_title, md.bind or md.host, md.port).start()
            except OSError as exc:
                raise ScenarioFailure(step, f"the harness cannot listen on {md.bind or md.host}:{md.port}: {exc}",
                                      expected="a free port for the move destination") from None
        chosen = self.listener if self.listener is not None else self._own_listener
        if not self._listener_ready:
            chosen.clear()
            self._listener_ready = True
        return chosen

    def close_all(self) -> None:
        super().close_all()  # type: ignore[misc]
        if self._own_listener is not None:
            self._own_listener.stop()
            self._own_listener = None

    def _run_op(self, step: Step, args: dict, what: str, default_within: float, op: Callable[[Any, float], Any]) -> Any:
        """Run ``op(scu, within)``; everything but an answer becomes a ScenarioFailure saying what came."""
        from dicomconf.scu.client import Aborted, NotNegotiated, Rejected, UnexpectedReply
        from dicomconf.scu.connection import Closed, Silence
        from dicomconf.scu.services import Unfinished
        from dicomconf.ul.errors import RemoteProtocolError

        name, _conn = self._conn(step, args)  # type: ignore[attr-defined]
        within = self._duration(step, args.get("within"), default_within)  # type: ignore[attr-defined]
        try:
            return op(self.scus[name], within)  # type: ignore[attr-defined]
        except NotNegotiated as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected="an accepted presentation context "
                                  "(propose it in the associate step)") from None
        except Unfinished as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"the final response within {within:g}s",
                                  came=f"{getattr(exc.partial, 'pending', 0)} pending responses") from None
        except (Aborted, Rejected) as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"the {what} responses within {within:g}s",
                                  came=str(exc)) from None
        except UnexpectedReply as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"the {what} responses", came=repr(exc.received)) from None
        except (Closed, Silence, OSError, RemoteProtocolError) as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"the {what} responses within {within:g}s",
                                  came=str(exc)) from None
        except ValueError as exc:
            raise step.error(f"{what}: {exc}") from None

    def _check_status(self, step: Step, want: Any, status: int | None, what: str, clause: str, comment: str = "") -> None:
        from dicomconf.ul import dimse

        if want == "any" or not match(want, status):
            return
        meaning = dimse.status_meaning(dimse.COMMAND_CODES[f"{what}-RSP"], status)[1] if status is not None else ""
        said = f", Error Comment {comment!r}" if comment else ""
        raise ScenarioFailure(step, f"{what} final status {status:#06x} ({meaning}){said} ({clause})",
                              expected=f"status {_hex(want)}", came=f"status {status:#06x}")

    def _check(self, step: Step, want: Any, have: Any, label: str, clause: str) -> None:
        if want is None:
            return
        problems = match(want, have, label)
        if problems:
            raise ScenarioFailure(step, f"{label}: {'; '.join(problems)} ({clause})", expected=f"{label} {brief(want)}",
                                  came=f"{label} {brief(have)}")

    def _save_view(self, step: Step, save: Any, view: dict) -> None:
        for var, path in (save or {}).items():
            try:
                value = get_path(view, str(path))
            except KeyError:
                raise ScenarioFailure(step, f"cannot save {var}: {path} is not in what came "
                                      f"(fields: {', '.join(sorted(view))})") from None
            with self._lock:  # type: ignore[attr-defined]
                self.saved[var] = value  # type: ignore[attr-defined]

    def _model(self, step: Step, args: dict, op: str) -> str:
        from dicomconf.scu.client import resolve_uid

        model = str(args.get("model", "study"))
        name = "worklist" if model == "worklist" else _MODELS.get(model, "{model}").format(op=op, model=model)
        try:
            return resolve_uid(name)
        except ValueError as exc:
            raise step.error(str(exc), "model") from None

    def _identifier(self, step: Step, args: dict) -> Dataset:
        ds = build_dataset(step, args.get("keys"), "keys")
        if args.get("level") is not None:
            ds.QueryRetrieveLevel = str(args["level"])
        return ds

    # ------------------------------------------------------------ store_set

    def _step_store_set(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scenario import qr_data

        args = args or {}
        studies = args.get("studies")
        try:
            if self.held is None:
                chosen = qr_data.instances(studies)
            else:  # the set's own objects, copied only when sent (most are held already)
                key = tuple(studies) if isinstance(studies, list) else studies
                chosen = [qr_data.by_uid(uid) for uid in _chosen_uids(key)]
        except ValueError as exc:
            raise step.error(str(exc), "studies") from None
        for instance in chosen:
            if self._holds_already(step, args, instance):
                continue
            dataset = instance.dataset if self.held is None else copy.deepcopy(instance.dataset)  # not the set's own
            status = self._run_op(step, args, "C-STORE", STORE_WITHIN,
                                  lambda scu, t, ds=dataset: scu.store(ds, timeout=t))
            if status != 0 and status >> 12 != 0xB:
                from dicomconf.ul import dimse

                meaning = dimse.status_meaning(dimse.C_STORE_RSP, status)[1]
                raise ScenarioFailure(step, f"C-STORE of {instance.uid} answered {status:#06x} ({meaning}) "
                                      "(PS3.4 B.2.3)", expected="status 0000 or Bxxx", came=f"status {status:#06x}")

    def _holds_already(self, step: Step, args: dict, instance: Any) -> bool:
        """True when the embedded target holds ``instance`` exactly as this C-STORE would send it."""
        if self.held is None:
            return False
        from dicomconf.scu.client import load_dataset

        try:
            name, _conn = self._conn(step, args)  # type: ignore[attr-defined]
            scu = self.scus[name]  # type: ignore[attr-defined]
            ds, _raw, preferred = load_dataset(instance.dataset)
            sop_class = str(ds.SOPClassUID)
            transfer_syntax = scu.accepted[scu.context_for(sop_class, preferred)][1]
            have = self.held(instance.uid)
        except Exception:  # noqa: BLE001 - not negotiated, no association ...: the C-STORE says what is wrong
            return False
        return have is not None and have == (sop_class, transfer_syntax, _known_encoded(instance.uid, transfer_syntax))

    # ------------------------------------------------------------ find

    def _step_find(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu import services

        model = self._model(step, args, "find")
        identifier = self._identifier(step, args)
        cancel_after = args.get("cancel_after")
        outcome = self._run_op(step, args, "C-FIND", FIND_WITHIN, lambda scu, t: services.find(
            scu, model, identifier, within=t, cancel_after=cancel_after))
        want = args.get("status", CANCEL if cancel_after else 0)
        self._check_status(step, want, outcome.status, "C-FIND", "PS3.4 C.4.1.1.4", outcome.error_comment)
        views = [dataset_view(m) for m in outcome.matches]
        self._check(step, args.get("matches"), outcome.pending, "matches", "PS3.4 C.4.1.3.1")
        self._check(step, args.get("returns"), views, "identifiers returned", "PS3.4 C.2.2.2, C.4.1.3.1.1")
        for i, view in enumerate(views):
            self._check(step, args.get("each"), view, f"identifier {i + 1}", "PS3.4 C.2.2.2, C.4.1.1.3.2")
        mode = args.get("keys_returned")
        if mode:
            requested = set(dataset_view(identifier)) | {"QueryRetrieveLevel"}
            for i, view in enumerate(views):
                missing = sorted(requested - set(view) - ALWAYS_ALLOWED)
                extra = sorted(set(view) - requested - ALWAYS_ALLOWED) if mode == "exact" else []
                if missing or extra:
                    raise ScenarioFailure(
                        step, f"identifier {i + 1} does not hold the requested keys "
                        f"({'missing ' + ', '.join(missing) if missing else ''}"
                        f"{'; ' if missing and extra else ''}{'not requested ' + ', '.join(extra) if extra else ''}) "
                        "(PS3.4 C.4.1.1.3.2)", expected=f"{mode}: {', '.join(sorted(requested))}",
                        came=", ".join(sorted(view)))
        self._save_view(step, args.get("save"), {"status": outcome.status, "count": outcome.pending,
                                                 "matches": views})

    # ------------------------------------------------------------ move, get

    def _step_move(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu import services

        listener = self._listener_for(step)
        destination = args.get("destination") or listener.ae_title
        model = self._model(step, args, "move")
        identifier = self._identifier(step, args)
        outcome = self._run_op(step, args, "C-MOVE", RETRIEVE_WITHIN, lambda scu, t: services.move(
            scu, model, identifier, destination, within=t, cancel_after=args.get("cancel_after")))
        expected_count = outcome.completed or 0
        arrived = [] if outcome.status is None else listener.wait_stored(
            expected_count if destination == listener.ae_title else 0, ARRIVAL_GRACE)
        self._retrieved(step, args, outcome, "C-MOVE", "PS3.4 C.4.2",
                        [(s.sop_instance_uid, s.data, s.transfer_syntax) for s in arrived])

    def _step_get(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu import services

        model = self._model(step, args, "get")
        identifier = self._identifier(step, args)
        outcome = self._run_op(step, args, "C-GET", RETRIEVE_WITHIN, lambda scu, t: services.get(
            scu, model, identifier, within=t, cancel_after=args.get("cancel_after"),
            cancel_after_stores=args.get("cancel_after_stores")))
        if outcome.off_role:
            raise ScenarioFailure(
                step, "C-GET: the target sent C-STORE-RQs for SOP classes on which we were not granted the SCP "
                "role (PS3.7 D.3.3.4, PS3.4 C.4.3.2: the C-GET's sub-operations go where the requestor took "
                "the SCP role)", expected="C-STORE sub-operations only on SOP classes whose role item granted us SCP",
                came=", ".join(outcome.off_role))
        self._retrieved(step, args, outcome, "C-GET", "PS3.4 C.4.3",
                        [(a.sop_instance, a.data, a.transfer_syntax) for a in outcome.arrivals])

    def _retrieved(self, step: Step, args: dict, outcome: Any, what: str, clause: str, arrived: list) -> None:
        want = args.get("status", CANCEL if args.get("cancel_after") or args.get("cancel_after_stores") else 0)
        self._check_status(step, want, outcome.status, what, f"{clause}.1.3", outcome.error_comment)
        if args.get("final_counts"):
            self._final_counts(step, outcome, what, f"{clause}.3.1")
        if args.get("pending_counts"):
            self._pending_counts(step, outcome, what, f"{clause}.3.1")
        for key in ("completed", "failed", "warning", "remaining"):
            if key in args:
                self._check(step, args[key], getattr(outcome, key), f"{key} sub-operations", f"{clause}.1.3.1")
        if "failed_uids" in args:
            self._check(step, args["failed_uids"], outcome.failed_uids, "Failed SOP Instance UID List", f"{clause}.1.3.1")
        uids = [uid for uid, _, _ in arrived]
        arrive = args.get("arrive")
        if isinstance(arrive, list):
            if sorted(map(str, arrive)) != sorted(uids):
                raise ScenarioFailure(step, f"{what}: other instances arrived than expected ({clause}.2)",
                                      expected=f"{len(arrive)}: {', '.join(sorted(map(str, arrive)))}",
                                      came=f"{len(uids)}: {', '.join(sorted(uids)) or 'none'}")
        elif arrive is not None:
            self._check(step, arrive, len(uids), "instances arrived", f"{clause}.2")
        if args.get("same_bytes", True):
            self._same(step, arrived, what)
        self._save_view(step, args.get("save"), {
            "status": outcome.status, "completed": outcome.completed, "failed": outcome.failed,
            "warning": outcome.warning, "remaining": outcome.remaining, "arrived": uids,
            "failed_uids": outcome.failed_uids})

    def _final_counts(self, step: Step, outcome: Any, what: str, clause: str) -> None:
        """The final response carries the Completed, Failed and Warning counts (PS3.4 C.4.2.3.1, C.4.3.3.1);
        its Remaining, when present, is 0 unless the operation was cancelled (it is final once none remain)."""
        from dicomconf.scu.services import COUNT_KEYWORDS

        command = outcome.final.command if outcome.final is not None else {}
        missing = [name for name in ("completed", "failed", "warning")
                   if command.get(COUNT_KEYWORDS[name]) is None]
        if missing:
            raise ScenarioFailure(step, f"{what}: the final response does not give the number of "
                                  f"{', '.join(missing)} sub-operations ({clause})",
                                  expected="Number of Completed, Failed and Warning Sub-operations",
                                  came=_counts_text(command))
        remaining = command.get(COUNT_KEYWORDS["remaining"])
        if remaining is not None and int(remaining) != 0 and outcome.status != CANCEL:
            raise ScenarioFailure(step, f"{what}: a final response (status {outcome.status:#06x}) says "
                                  f"{int(remaining)} sub-operations remain ({clause})",
                                  expected="Number of Remaining Sub-operations absent or 0", came=_counts_text(command))

    def _pending_counts(self, step: Step, outcome: Any, what: str, clause: str) -> None:
        """Each pending response gives the four counts (PS3.4 C.4.2.3.1, C.4.3.3.1), and they tell one story:
        the same total each time, Remaining never growing, Completed, Failed and Warning never shrinking, and,
        unless cancelled, the total that the final response's counts add up to."""
        from dicomconf.scu.services import COUNT_KEYWORDS, PENDING

        previous: dict[str, int] | None = None
        total = None
        for n, msg in enumerate((m for m in outcome.responses if m.status in PENDING), 1):
            counts = {name: msg.command.get(keyword) for name, keyword in COUNT_KEYWORDS.items()}
            missing = [name for name, value in counts.items() if value is None]
            if missing:
                raise ScenarioFailure(step, f"{what}: pending response {n} does not give the number of "
                                      f"{', '.join(missing)} sub-operations ({clause})",
                                      expected="Number of Remaining, Completed, Failed and Warning Sub-operations",
                                      came=_counts_text(msg.command))
            counts = {name: int(value) for name, value in counts.items()}
            total = total if total is not None else sum(counts.values())
            shrank = previous is not None and (counts["remaining"] > previous["remaining"] or any(
                counts[k] < previous[k] for k in ("completed", "failed", "warning")))
            if sum(counts.values()) != total or shrank:
                raise ScenarioFailure(step, f"{what}: pending response {n} does not follow from the one before "
                                      f"({clause})", expected=f"counts adding up to {total}, Remaining never growing, "
                                      "the others never shrinking", came=_counts_text(msg.command))
            previous = counts
        final = outcome.final.command if outcome.final is not None else {}
        done = [final.get(COUNT_KEYWORDS[k]) for k in ("completed", "failed", "warning")]
        if total is not None and outcome.status != CANCEL and None not in done and sum(map(int, done)) != total:
            raise ScenarioFailure(step, f"{what}: the pending responses counted {total} sub-operations, the final "
                                  f"response {sum(map(int, done))} ({clause})", expected=f"{total} in all",
                                  came=_counts_text(final))

    def _same(self, step: Step, arrived: list, what: str) -> None:
        from dicomconf.scenario import qr_data
        from dicomconf.ul import dimse

        for uid, data, ts in arrived:
            known = qr_data.by_uid(uid)
            if known is None:
                continue
            try:
                have = dimse.decode_dataset(data, ts)
            except Exception as exc:
                raise ScenarioFailure(step, f"{what}: instance {uid} arrived in bytes that do not decode as {ts}: {exc}",
                                      expected="the data set stored") from None
            diff = differences(known.dataset, have)
            if diff:
                raise ScenarioFailure(step, f"{what}: instance {uid} did not arrive as it was stored (PS3.4 B.4.1): "
                                      + "; ".join(diff[:5]), expected="element by element what store_set stored",
                                      came=f"{len(diff)} difference(s)")

    # ------------------------------------------------------------ commit

    def _step_commit(self, step: Step, args: Any, local: dict) -> None:
        from pydicom.uid import generate_uid

        from dicomconf.scu import services

        refs = self._commit_refs(step, args.get("instances", "set"))
        info = Dataset()
        info.TransactionUID = generate_uid()
        info.ReferencedSOPSequence = Sequence([build_dataset(step, {"ReferencedSOPClassUID": c,
                                                                    "ReferencedSOPInstanceUID": u}, "instances")
                                               for c, u in refs])
        report = args.get("report") or self.profile.commitment.report or "any"  # type: ignore[attr-defined]
        md = self.profile.query_retrieve.move_destination  # type: ignore[attr-defined]
        usable = self.listener is not None or (md is not None and md.port)
        if report == "new" or (report == "any" and usable):
            listener = self._listener_for(step)  # "new" without a destination fails here, saying so
        else:
            listener = None
        seen = len(listener.reports) if listener is not None else 0
        early: list = []

        def act(scu: Any, within: float) -> Any:
            before = len(scu.held)
            answer = services.n_action(scu, "storage-commitment", COMMITMENT_SOP_INSTANCE, 1, info, within=within)
            early.extend(m for m in list(scu.held)[before:] if m.name == "N-EVENT-REPORT-RQ")
            return answer

        outcome = self._run_op(step, args, "N-ACTION", REPORT_WITHIN, act)
        self._check_status(step, args.get("status", 0), outcome.status, "N-ACTION", "PS3.4 J.3.2.1.2",
                           outcome.error_comment)
        if outcome.status != 0:
            return
        if early and args.get("response_first"):
            raise ScenarioFailure(step, "the N-EVENT-REPORT-RQ came before the N-ACTION-RSP that answers the "
                                  "request (PS3.4 J.3.2.1.3, J.3.3.1)", expected="the N-ACTION-RSP, then the report",
                                  came="the report first")
        within = self._duration(step, args.get("report_within"), REPORT_WITHIN, "report_within")  # type: ignore[attr-defined]
        event_type, dataset, came_on = self._wait_report(step, args, report, listener, seen, within)
        view = dataset_view(dataset)
        if view.get("TransactionUID") != str(info.TransactionUID):
            raise ScenarioFailure(step, "the report's Transaction UID is not the request's (PS3.4 J.3.3.1.1)",
                                  expected=str(info.TransactionUID), came=str(view.get("TransactionUID")))
        self._check(step, args.get("event"), event_type, "Event Type ID", "PS3.4 J.3.3.1.1")
        committed = view.get("ReferencedSOPSequence", [])
        failed = view.get("FailedSOPSequence", [])
        self._check(step, args.get("committed"), len(committed), "instances committed", "PS3.4 J.3.3.1.1")
        if "failed" in args:
            want = [{"ReferencedSOPInstanceUID": f.get("sop_instance"), "FailureReason": f.get("reason")}
                    for f in args["failed"] or ()]
            want = [{k: v for k, v in w.items() if v is not None} for w in want]
            if len(want) != len(failed):
                raise ScenarioFailure(step, f"{len(failed)} instance(s) reported failed, not {len(want)} "
                                      "(PS3.4 J.3.3.1.1, PS3.3 C.14.1.1)", expected=brief(args["failed"]),
                                      came=brief(failed))
            self._check(step, want, failed, "Failed SOP Sequence", "PS3.4 J.3.3.1.1")
        self._save_view(step, args.get("save"), {"event": event_type, "committed": len(committed),
                                                 "failed": failed, "report": came_on, **view})

    def _commit_refs(self, step: Step, spec: Any) -> list[tuple[str, str]]:
        from dicomconf.scenario import qr_data
        from dicomconf.scu.client import resolve_uid

        unknown = 0
        studies: Any = None
        if isinstance(spec, dict):
            unknown = int(spec.get("unknown", 0))
            chosen = spec.get("set", True)
            studies = None if chosen is True else ([] if chosen is False else chosen)
            spec = "set"
        if spec == "set":
            try:
                refs = [(i.sop_class, i.uid) for i in qr_data.instances(studies)] if studies != [] else []
            except ValueError as exc:
                raise step.error(str(exc), "instances") from None
            ct = qr_data.SOP_CLASSES["CT"]
            return refs + [(ct, f"{qr_data.ROOT}.99.{n}") for n in range(1, unknown + 1)]  # never stored
        try:
            return [(resolve_uid(str(r["sop_class"])), str(r["sop_instance"])) for r in spec]
        except (ValueError, KeyError, TypeError) as exc:
            raise step.error(f"instances: {exc}", "instances") from None

    def _wait_report(self, step: Step, args: dict, report: str, listener: Any, seen: int, within: float):
        import time

        from dicomconf.scu import services

        name, _conn = self._conn(step, args)  # type: ignore[attr-defined]
        scu = self.scus[name]  # type: ignore[attr-defined]
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if report in ("same", "any"):
                try:
                    got = services.wait_event_report(scu, within=min(left, 0.2) if report == "any" else max(left, 0))
                    return got.event_type, got.dataset, "same"
                except services.Unfinished:
                    pass
                except Exception as exc:
                    raise ScenarioFailure(step, f"waiting for the N-EVENT-REPORT: {exc}",
                                          expected="N-EVENT-REPORT-RQ (PS3.4 J.3.3)", came=str(exc)) from None
            if report in ("new", "any") and listener is not None:
                got = listener.wait_report(min(left, 0.2) if report == "any" else max(left, 0), seen)
                if got is not None:
                    return got.event_type, got.dataset, "new"
            if time.monotonic() >= deadline:
                where = {"same": "on the requesting association", "new": "on a new association to the harness",
                         "any": "on either association"}[report]
                raise ScenarioFailure(step, f"no Storage Commitment N-EVENT-REPORT {where} within {within:g}s "
                                      "(PS3.4 J.3.3.1)", expected=f"an N-EVENT-REPORT-RQ, report: {report}",
                                      came="nothing")

    # ------------------------------------------------------------ mpps

    def _step_mpps(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu import services

        op = args.get("op", "create")
        attributes = build_dataset(step, args.get("attributes"), "attributes")
        instance = args.get("instance")
        if op == "set" and not instance:
            raise step.error("an N-SET needs the instance (its SOP Instance UID)", "instance")
        what = "N-CREATE" if op == "create" else "N-SET"
        if op == "create":
            outcome = self._run_op(step, args, what, REPORT_WITHIN, lambda scu, t: services.n_create(
                scu, "mpps", attributes, sop_instance=instance or None, within=t))
        else:
            outcome = self._run_op(step, args, what, REPORT_WITHIN, lambda scu, t: services.n_set(
                scu, "mpps", str(instance), attributes, within=t))
        self._check_status(step, args.get("status", 0), outcome.status, what,
                           "PS3.4 F.7.2.1" if op == "create" else "PS3.4 F.7.2.2", outcome.error_comment)
        self._save_view(step, args.get("save"), {"status": outcome.status,
                                                 "instance": outcome.sop_instance or instance or "",
                                                 "attributes": dataset_view(outcome.dataset)})


def _counts_text(command: Any) -> str:
    """The sub-operation counts a response carries, for a failure message (PS3.7 9.3.3.2, 9.3.4.2)."""
    from dicomconf.scu.services import COUNT_KEYWORDS

    have = [f"{name} {command.get(keyword)}" for name, keyword in COUNT_KEYWORDS.items()
            if command.get(keyword) is not None]
    return ", ".join(have) or "no counts"


def _hex(want: Any) -> str:
    if isinstance(want, int) and not isinstance(want, bool):
        return f"{want:#06x}"
    if isinstance(want, list):
        return " or ".join(_hex(w) for w in want)
    if isinstance(want, dict) and set(want) == {"min", "max"}:  # a status range such as Cxxx (PS3.4 C.4.1.1.4)
        return f"{_hex(want['min'])}..{_hex(want['max'])}"
    return str(want)


__all__ = ["ServiceSteps", "build_dataset", "dataset_view", "differences"]
