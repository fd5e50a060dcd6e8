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
are closed and the report is written a last time.  The TLS options build the
two legs' contexts (:func:`tls_contexts`: the reference SCP's server context
towards the SCU, the SCU's client context towards the SCP, PS3.15 B.1 and the
BCP 195 profile), each writing an NSS key log in the report's ``pcap/``
directory.  Exit status: 0 when every
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
    parser.add_argument("--relay-only", action="store_true", help=argparse.SUPPRESS)  # the benchmark's floor
    tls = parser.add_argument_group("TLS (PS3.15 B.1: terminated towards the SCU, originated towards the SCP)")
    tls.add_argument("--tls-listen-cert", metavar="FILE", help="accept TLS from the SCU with this certificate (PEM)")
    tls.add_argument("--tls-listen-key", metavar="FILE", help="the key of --tls-listen-cert (PEM)")
    tls.add_argument("--tls-listen-ca", metavar="FILE", help="CA certificates that verify the SCU's certificate")
    tls.add_argument("--tls-require-client-cert", action="store_true",
                     help="refuse an SCU without a certificate that --tls-listen-ca verifies")
    tls.add_argument("--tls-to", action="store_true", help="connect to the SCP with TLS")
    tls.add_argument("--tls-to-ca", metavar="FILE", help="CA certificates that verify the SCP's certificate "
                                                         "(default: the system's)")
    tls.add_argument("--tls-to-cert", metavar="FILE", help="the proxy's client certificate towards the SCP (PEM)")
    tls.add_argument("--tls-to-key", metavar="FILE", help="the key of --tls-to-cert (PEM)")
    tls.add_argument("--tls-to-insecure", action="store_true",
                     help="do not verify the SCP's certificate and host name (the report says so)")
    tls.add_argument("--tls-to-server-name", metavar="NAME",
                     help="the name the SCP's certificate is checked against and sent as SNI (default: the --to host)")


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


def tls_contexts(args: argparse.Namespace, pcap_dir: Path):
    """The two legs' SSL contexts (None: plain), key logs in ``pcap_dir``; ValueError with a one-line reason."""
    from dicomconf.scp.tls import TLSConfig, TLSSetupError, server_context
    from dicomconf.scu.tls import client_context

    listen = to = None
    listen_opts = [o for o, v in (("--tls-listen-ca", args.tls_listen_ca),
                                  ("--tls-require-client-cert", args.tls_require_client_cert)) if v]
    if args.tls_listen_cert or args.tls_listen_key:
        if not (args.tls_listen_cert and args.tls_listen_key):
            raise ValueError("TLS towards the SCU needs both --tls-listen-cert and --tls-listen-key")
        if args.tls_require_client_cert and not args.tls_listen_ca:
            raise ValueError("--tls-require-client-cert needs --tls-listen-ca (the CA that verifies the SCU)")
        try:
            listen = server_context(TLSConfig(cert=args.tls_listen_cert, key=args.tls_listen_key,
                                              ca=args.tls_listen_ca, require_client_cert=args.tls_require_client_cert,
                                              port=0))
        except TLSSetupError as exc:
            raise ValueError(str(exc).replace("tls.cert", "--tls-listen-cert").replace("tls.key", "--tls-listen-key")
                             .replace("tls.ca", "--tls-listen-ca")) from None
    elif listen_opts:
        raise ValueError(f"{listen_opts[0]} needs --tls-listen-cert and --tls-listen-key")
    to_opts = [o for o, v in (("--tls-to-ca", args.tls_to_ca), ("--tls-to-cert", args.tls_to_cert),
                              ("--tls-to-key", args.tls_to_key), ("--tls-to-insecure", args.tls_to_insecure),
                              ("--tls-to-server-name", args.tls_to_server_name)) if v]
    if args.tls_to:
        if (args.tls_to_cert is None) != (args.tls_to_key is None):
            raise ValueError("a client certificate towards the SCP needs both --tls-to-cert and --tls-to-key")
        try:
            to = client_context(ca=args.tls_to_ca, cert=args.tls_to_cert, key=args.tls_to_key,
                                insecure=args.tls_to_insecure)
        except ValueError as exc:
            raise ValueError(f"--tls-to: {exc}") from None
    elif to_opts:
        raise ValueError(f"{to_opts[0]} needs --tls-to")
    for side, ctx in (("requestor", listen), ("acceptor", to)):
        if ctx is not None:
            pcap_dir.mkdir(parents=True, exist_ok=True)
            ctx.keylog_filename = str(pcap_dir / f"tls-{side}-leg.keys")
    return listen, to


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
    try:
        args.tls = tls_contexts(args, report_dir / "pcap")
    except ValueError as exc:
        print(f"dicomconf proxy: {exc}", file=sys.stderr)
        return USAGE_EXIT
    loop = new_loop()
    try:
        return loop.run_until_complete(_serve(args, listen, target, plan, report_dir))
    finally:
        loop.close()


def _tls_summary(args: argparse.Namespace, target: tuple[str, int]) -> dict[str, object]:
    listen, to = args.tls
    return {
        "requestor_leg": None if listen is None else {
            "client_certificate": "required" if args.tls_require_client_cert else (
                "verified when offered" if args.tls_listen_ca else "not asked"),
            "key_log": listen.keylog_filename},
        "acceptor_leg": None if to is None else {
            "verified": not args.tls_to_insecure, "server_name": args.tls_to_server_name or target[0],
            "client_certificate": bool(args.tls_to_cert), "key_log": to.keylog_filename},
    }


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

    proxy = Proxy(listen, target, plan, finished, check_data_sets=not args.no_data_set_checks,
                  relay_only=args.relay_only, tls_listen=args.tls[0], tls_to=args.tls[1],
                  tls_server_name=args.tls_to_server_name)
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
                     "tls": _tls_summary(args, target)}}
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
