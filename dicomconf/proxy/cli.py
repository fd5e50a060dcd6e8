"""``dicomconf proxy``: relay a real SCU and a real SCP, judge both, write a capture and a report.

Theory of operation
-------------------
The sub-command checks its options (one-line errors, exit 4 as every
command's usage errors; a faults file's problems as ``file:line: what``),
starts a :class:`dicomconf.proxy.relay.Proxy` on uvloop when installed (else
asyncio's loop), prints the address it listens on, and prints one line per
association as it ends while :class:`dicomconf.proxy.report.ProxyReport`
rewrites the report directory.  It stops on SIGINT or SIGTERM, after
``--count`` associations or ``--seconds``; then the associations still open
are closed and the report is written a last time.  Exit status: 0 when every
association passed, 1 when a peer broke a must-level rule or the acceptor
could not be reached (:mod:`dicomconf.exitcodes`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import signal
import sys
from pathlib import Path

from dicomconf import exitcodes

USAGE_EXIT = exitcodes.USAGE_ERROR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="[HOST:]PORT",
                        help="where the SCU connects: a port (on 127.0.0.1), or HOST:PORT, [IPv6]:PORT; "
                             "0.0.0.0:PORT for every IPv4 address; port 0 picks a free one")
    parser.add_argument("--to", required=True, metavar="HOST:PORT", help="the SCP the associations are relayed to")
    parser.add_argument("--report-dir", metavar="DIR", help="where the report goes (default reports/proxy-<timestamp>)")
    parser.add_argument("--count", type=_positive_int, metavar="N", help="stop after N associations")
    parser.add_argument("--seconds", type=_positive_float, metavar="S", help="stop after S seconds")
    parser.add_argument("--faults", metavar="FILE.yaml",
                        help="inject faults on the relay: delay, drop, split, corrupt (docs/proxy.md)")
    parser.add_argument("--no-data-set-checks", action="store_true",
                        help="do not decode the data sets of DIMSE messages to check their encoding (less CPU)")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default=None,
                        help="the event loop (default uvloop when installed)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line per association")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected more than 0, got {text}")
    return value


def parse_listen(text: str) -> tuple[str, int]:
    """``PORT`` (127.0.0.1), ``HOST:PORT`` or ``[IPv6]:PORT``; ValueError with a one-line reason."""
    from dicomconf.scu.target import check_port, parse_target

    raw = text.strip()
    if raw.isdigit():
        port = int(raw)
        if port > 65535:
            raise ValueError(f"--listen {text!r}: port {port} is not a TCP port number (0-65535)")
        return "127.0.0.1", port
    if raw.endswith(":0") and not raw.endswith("::0"):
        host = parse_target(raw[:-2] + ":1").host
        return host, 0
    try:
        address = parse_target(raw, default_port=-1)
    except ValueError as exc:
        raise ValueError(f"--listen: {exc}".replace("target ", "", 1)) from None
    if address.port == -1:
        raise ValueError(f"--listen {text!r}: no port; expected PORT or HOST:PORT")
    check_port(address.port)
    return address.host, address.port


def _target(text: str) -> tuple[str, int]:
    from dicomconf.scu.target import parse_target

    raw = text.strip()
    try:
        address = parse_target(raw, default_port=-1)
    except ValueError as exc:
        raise ValueError(f"--to: {exc}") from None
    if address.port == -1:
        raise ValueError(f"--to {text!r}: no port; expected HOST:PORT")
    return address.host, address.port


def _loop_factory(name: str | None):
    if name in (None, "uvloop"):
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            if name == "uvloop":
                raise ValueError("--event-loop uvloop: uvloop is not installed") from None
    return asyncio.new_event_loop


def run(args: argparse.Namespace) -> int:
    from dicomconf.proxy.faults import FaultPlan, load_faults
    from dicomconf.scenario.loader import SourceError

    try:
        listen = parse_listen(args.listen)
        target = _target(args.to)
        new_loop = _loop_factory(args.event_loop)
    except ValueError as exc:
        print(f"dicomconf proxy: {exc}", file=sys.stderr)
        return USAGE_EXIT
    plan = FaultPlan()
    if args.faults:
        try:
            plan = load_faults(args.faults)
        except SourceError as exc:
            print(f"dicomconf proxy: {exc}", file=sys.stderr)
            return USAGE_EXIT
    report_dir = Path(args.report_dir or Path("reports") / f"proxy-{_dt.datetime.now():%Y%m%d-%H%M%S}")
    loop = new_loop()
    try:
        return loop.run_until_complete(_serve(args, listen, target, plan, report_dir))
    finally:
        loop.close()


async def _serve(args: argparse.Namespace, listen: tuple[str, int], target: tuple[str, int], plan,
                 report_dir: Path) -> int:
    from dicomconf.proxy.relay import Proxy
    from dicomconf.proxy.report import ProxyReport
    from dicomconf.scu.target import format_hostport

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    pending: list[asyncio.Future] = []
    ended = [0]

    def finished(relay) -> None:
        fut = loop.run_in_executor(None, report.add, relay)
        pending.append(fut)
        fut.add_done_callback(lambda f: _said(relay, f))

    def _said(relay, fut) -> None:
        ended[0] += 1
        if fut.exception() is not None:
            print(f"dicomconf proxy: association #{relay.number}: the report was not written: {fut.exception()}",
                  file=sys.stderr)
        elif not args.quiet:
            rec = report.records[-1] if report.records else None
            rec = next((r for r in report.records if r["id"] == f"association-{relay.number:04d}"), rec)
            if rec is not None:
                why = f": {rec['failure']['message']}" if rec.get("failure") else ""
                print(f"{rec['title']}: {rec['outcome']}{why}", flush=True)
        if args.count and ended[0] >= args.count:
            stop.set()

    proxy = Proxy(listen, target, plan, finished, check_data_sets=not args.no_data_set_checks)
    try:
        await proxy.start()
    except OSError as exc:
        print(f"dicomconf proxy: cannot listen on {format_hostport(*listen)}: {exc.strerror or exc}", file=sys.stderr)
        return USAGE_EXIT
    run = {"target": f"proxy {format_hostport(listen[0], proxy.port)} -> {format_hostport(*target)}",
           "profile": {"name": "proxy", "source": None},
           "start": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
           "proxy": {"listen": format_hostport(listen[0], proxy.port), "to": format_hostport(*target),
                     "faults": [f.describe() for f in plan.faults], "faults_file": plan.source,
                     "tls": "not supported yet"}}
    report = ProxyReport(report_dir, run)
    await loop.run_in_executor(None, report.finish)
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    print(f"dicomconf proxy: listening on {format_hostport(listen[0], proxy.port)}, relaying to "
          f"{format_hostport(*target)}; report in {report_dir}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.seconds) if args.seconds else await stop.wait()
    except asyncio.TimeoutError:
        pass
    await proxy.stop()
    while pending and not all(f.done() for f in pending):
        await asyncio.wait(pending)
    document = await loop.run_in_executor(None, report.finish)
    from dicomconf.report.model import counts_line

    print(f"dicomconf proxy: {len(report.records)} association(s): {counts_line(document)}; report: "
          f"{report_dir / 'report.html'}", flush=True)
    return report.exit_status()
