"""The proxy's report: one test case per relayed association, in the formats of a run.

Theory of operation
-------------------
When an association ends, :class:`ProxyReport` writes its capture
(``pcap/association-NNNN.pcap``, pcapng with both directions, stamped with
the times the proxy read each chunk; with faults also
``association-NNNN.delivered.pcap``, what each receiver was given) and turns
the association into a record of the run model
(:mod:`dicomconf.report.model`): id ``association-NNNN``, outcome *failed*
when a must-level finding was raised about either peer (the failure names
the faulty side, the finding and its clause), *error* when the acceptor could
not be reached, else *passed*.  The whole report (``report.json``,
``report.html`` with the ladder diagram drawn from the capture, whose
lifelines are the requestor and the acceptor, and ``junit.xml``, one
``testcase`` per association) is written when the proxy stops; ``report.json``
and ``junit.xml`` are also written again after each association, so a proxy
that is killed loses at most the associations still open.  (Rendering the
HTML reads every capture of the session: after each association it would
cost more the longer the session.)  Writing happens off the event loop, one write at
a time, in a forked child process where the platform has ``fork`` (the
deferred data set checks of :meth:`AssociationJudge.finish` run there too),
so that it takes no interpreter time from the relay.
"""

from __future__ import annotations

import json
import os
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from dicomconf import exitcodes
from dicomconf.proxy.tlsleg import keys_for
from dicomconf.wire.association import endpoint
from dicomconf.wire.capture import write_pcap


def _title(relay: Any) -> str:
    s = relay.judge.summary if relay.judge is not None else None
    peers = f"{endpoint(relay.client)} -> {relay.proxy.target[0]}:{relay.proxy.target[1]}"
    if s is not None and s.calling_ae is not None:
        return f"association #{relay.number}: {s.calling_ae} -> {s.called_ae} ({peers})"
    return f"association #{relay.number} ({peers})"


def _write_legs(relay: Any, ident: str, pcap_dir: Path) -> dict[str, Any]:
    """Each TLS leg's capture (the records as on the wire) and its key log lines (NSS format), side by side."""
    out: dict[str, Any] = {}
    for side, leg in getattr(relay, "legs", {}).items():
        pcap = pcap_dir / f"{ident}.{side}-leg.pcap"
        keys = pcap_dir / f"{ident}.{side}-leg.keys"
        keylog = relay.proxy.keylogs.get(side)
        keys.write_text(keys_for(Path(keylog), [leg.random]) if keylog else "", encoding="ascii")
        write_pcap(pcap, [relay.leg_convs[side]],
                   name=f"proxy {ident}, {side} leg: TLS records as on the wire; key log {keys.name} (NSS format)")
        out[side] = {"pcap": str(pcap), "keys": str(keys), **leg.describe()}
    return out


def _not_judged(judge: Any) -> dict[str, str]:
    if judge is None:
        return {}
    out = dict(judge.unjudged)
    if judge.unchecked_data_sets:
        out["data_sets"] = (f"{judge.unchecked_data_sets} data set(s) past the {judge.DEFER_LIMIT >> 20} MiB held "
                            "for the encoding checks were counted, not decoded")
    return out


def association_record(relay: Any, pcap_dir: Path) -> dict[str, Any]:
    """The run-model record of one finished association (writes its captures)."""
    ident = f"association-{relay.number:04d}"
    pcap = delivered = None
    judge = relay.judge
    if judge is not None:
        judge.finish()  # the data set checks deferred off the relay's thread
    legs = getattr(relay, "legs", {})
    if relay.conv is not None:
        if legs:  # the DICOM inside the TLS, as the judge saw it; the wire's records are in the leg captures
            pcap = pcap_dir / f"{ident}.decrypted.pcap"
            write_pcap(pcap, [relay.conv], name=f"proxy {ident}, decrypted: the DICOM inside TLS ("
                                                f"{', '.join(f'{ident}.{s}-leg.pcap' for s in legs)} hold the TLS records)")
        else:
            pcap = pcap_dir / f"{ident}.pcap"
            write_pcap(pcap, [relay.conv], name=f"proxy {ident}")
    tls = _write_legs(relay, ident, pcap_dir)
    if relay.delivered is not None:
        delivered = pcap_dir / f"{ident}.delivered.pcap"
        write_pcap(delivered, [relay.delivered], name=f"proxy {ident} as delivered")
    findings = [j.as_dict() for j in judge.judged] if judge is not None else []
    musts = judge.must_failures() if judge is not None else []
    outcome = "error" if relay.error else ("failed" if musts else "passed")
    failure = None
    if relay.error:
        failure = {"message": relay.error, "text": relay.error}
    elif musts:
        first = musts[0]
        sides = sorted({j.side for j in musts})
        text = (f"{' and '.join(sides)} broke the standard: {first.finding.code} ({first.finding.clause}) "
                f"in PDU #{first.pdu}, frame {first.frame}: {first.finding.message}")
        if len(musts) > 1:
            text += f" (and {len(musts) - 1} more must-level finding(s))"
        failure = {"message": text, "text": text, "side": first.side, "faulty_sides": sides,
                   "finding": {"code": first.finding.code, "clause": first.finding.clause,
                               "severity": first.finding.severity, "message": first.finding.message},
                   "pcap": str(pcap) if pcap else None}
    association = judge.summary.as_json() if judge is not None else {}
    association.update({
        "faults_applied": relay.faults.applied if relay.faults is not None else [],
        "dropped_by_fault": relay.dropped, "stopped_by_proxy": relay.stopped,
        "delivered_pcap": str(delivered) if delivered else None,
        "not_judged": _not_judged(judge),
        "tls": tls,
    })
    clauses = sorted({j.finding.clause for j in musts}) or ["PS3.8 9.2 Table 9-10", "PS3.8 9.3"]
    target = f"{relay.proxy.target[0]}:{relay.proxy.target[1]}"
    return {
        "id": ident, "title": _title(relay), "clauses": clauses, "severity": "must", "area": "proxy",
        "role": "scu", "tests": "SCP", "outcome": outcome, "duration_s": round(max(time.time() - relay.started, 0), 3),
        "findings": findings, "pcap": str(pcap) if pcap else None, "file": "", "failure": failure,
        "skip_reason": None, "association": association,
        "lifelines": [f"requestor {endpoint(relay.client)}", f"acceptor {target}"],
    }


def junit_xml(document: dict[str, Any]) -> str:
    """JUnit XML (xunit2 shape) of a proxy report: one testcase per association."""
    cases = document["scenarios"]
    suite = ET.Element("testsuite", name="dicomconf proxy", tests=str(len(cases)),
                       failures=str(sum(c["outcome"] == "failed" for c in cases)),
                       errors=str(sum(c["outcome"] == "error" for c in cases)), skipped="0",
                       time=f"{sum(c['duration_s'] for c in cases):.3f}",
                       timestamp=str(document["run"].get("start", "")))
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname="proxy", name=f"{c['id']}: {c['title']}",
                             time=f"{c['duration_s']:.3f}")
        props = ET.SubElement(case, "properties")
        for clause in c["clauses"]:
            ET.SubElement(props, "property", name="clause", value=clause)
        if c.get("pcap"):
            ET.SubElement(props, "property", name="pcap", value=c["pcap"])
        fail = c.get("failure") or {}
        if c["outcome"] in ("failed", "error"):
            tag = "failure" if c["outcome"] == "failed" else "error"
            el = ET.SubElement(case, tag, message=fail.get("message", ""))
            el.text = "\n".join(f["message"] + f" ({f['clause']}, {f['severity']})" for f in c["findings"]
                                if f["severity"] == "must") or fail.get("message", "")
        if c.get("pcap"):
            ET.SubElement(case, "system-out").text = f"[[ATTACHMENT|{c['pcap']}]]\n"
    root = ET.Element("testsuites")
    root.append(suite)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


class ProxyReport:
    """The report directory of one proxy session, kept up to date (see the module docstring)."""

    def __init__(self, report_dir: Path, run: dict[str, Any], fork: bool = True) -> None:
        self.dir = Path(report_dir)
        self.pcap_dir = self.dir / "pcap"
        self.pcap_dir.mkdir(parents=True, exist_ok=True)
        self.run = run
        self.records: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.document: dict[str, Any] | None = None
        self.fork = fork

    def add(self, relay: Any) -> None:
        """Record a finished association and write the report again (call from a worker thread).

        Where ``os.fork`` exists the work is done in a child process (a copy of this one, so nothing
        is serialized but the record coming back): writing a capture and re-rendering the HTML of a
        long association takes seconds of Python, which in a thread would hold the interpreter lock
        the relay's event loop needs for the associations still running; the child runs at a lower
        priority (``nice`` 10), so the relays come first for the CPU too.
        """
        with self.lock:
            if self.fork and hasattr(os, "fork"):
                self.records.append(self._add_in_child(relay))
            else:
                self.records.append(association_record(relay, self.pcap_dir))
                self._write(final=False)

    def _add_in_child(self, relay: Any) -> dict[str, Any]:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: writes the capture and the report, sends the record back, exits
            code = 1
            try:
                os.close(read_end)
                try:
                    os.nice(10)  # after the fact: the relays still running come first for the CPU
                except OSError:
                    pass
                try:
                    record = association_record(relay, self.pcap_dir)
                    self.records.append(record)
                    self._write(final=False)
                    payload = json.dumps(record, default=str).encode()
                    code = 0
                except BaseException as exc:  # noqa: BLE001 - said to the parent, which reports it
                    payload = b"!" + f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
                with os.fdopen(write_end, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as got:
            payload = got.read()
        os.waitpid(pid, 0)
        if not payload or payload[:1] == b"!":
            raise RuntimeError(payload[1:].decode("utf-8", "replace") or "the report writer died")
        return json.loads(payload)

    def exit_status(self) -> int:
        bad = any(r["outcome"] in ("failed", "error") for r in self.records)
        return exitcodes.FAILURES if bad else exitcodes.CONFORMS

    def finish(self) -> dict[str, Any]:
        with self.lock:
            return self._write(final=True)

    def _write(self, final: bool) -> dict[str, Any]:
        from dicomconf.report.json_report import write_reports

        run = {**self.run, "duration_s": round(time.monotonic() - self.t0, 3), "exit_status": self.exit_status(),
               "strict": False}
        run["proxy"] = {**run.get("proxy", {}), "running": not final, "associations": len(self.records)}
        if final:
            document = write_reports(self.dir, run, self.records)
        else:  # report.json only: the HTML (and the identity read from every capture) when the proxy stops
            from dicomconf.report.model import build_document

            document = build_document(self.dir, run, self.records)
            tmp = self.dir / "report.json.tmp"
            tmp.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
            tmp.replace(self.dir / "report.json")
        tmp = self.dir / "junit.xml.tmp"
        tmp.write_text(junit_xml(document), encoding="utf-8")
        tmp.replace(self.dir / "junit.xml")
        self.document = document
        return document


__all__ = ["ProxyReport", "association_record", "junit_xml"]
