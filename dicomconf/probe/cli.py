"""``dicomconf probe``: ask the target what it does and write its profile.

Theory of operation
-------------------
The options are checked first (a bad one is a usage error, exit 2, one
line); then the target's name is resolved and the probe runs
(:func:`dicomconf.probe.probe.run_probe`), and the findings are written as a
commented profile (:func:`dicomconf.probe.writer.render`) to ``-o FILE`` or
standard output.  Before it is written, the text is loaded back with
:func:`dicomconf.scenario.profile.load_profile`, so what the probe writes is
what the suite reads.

Exit status: 0 the profile was written; 1 the target answered but refused
the first association (the message says why and what to change), or the
written profile does not load; 2 usage error; ``dicomconf run``'s "target
unreachable" code (:data:`dicomconf.exitcodes.TARGET_UNREACHABLE`) when the
target cannot be reached (the name does not resolve, the connection is
refused or not answered, no A-ASSOCIATE-AC or -RJ comes back).  Every failure is one line on standard
error, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
from pathlib import Path

from dicomconf import exitcodes
from dicomconf.exitcodes import TARGET_UNREACHABLE as EXIT_UNREACHABLE

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, exitcodes.USAGE_ERROR
USAGE_EXIT = EXIT_USAGE  # argparse's own errors (dicomconf.cli), the same code as dicomconf run's


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, metavar="HOST[:PORT]",
                        help="the SCP: HOST:PORT, HOST (port 104), IPv4, [IPv6]:PORT")
    parser.add_argument("--called-ae", required=True, metavar="AE", help="the target's AE title")
    parser.add_argument("--calling-ae", metavar="AE", help="our AE title (default DICOMCONF-SCU)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the profile here (default: standard output)")
    parser.add_argument("--tls-port", type=int, metavar="N", help="also probe TLS on this port (PS3.15 B.1)")
    parser.add_argument("--tls-ca", metavar="FILE", help="CA certificates that verify the target's certificate")
    parser.add_argument("--tls-cert", metavar="FILE", help="our client certificate (with --tls-key)")
    parser.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert")
    parser.add_argument("--tls-insecure", action="store_true",
                        help="do not verify the target's certificate or host name")
    parser.add_argument("--user", metavar="NAME[:PASSCODE]",
                        help="a user the target should accept (user identity, PS3.7 D.3.3.7); sent in every request")
    parser.add_argument("--limits", action="store_true",
                        help="find the association limit (disruptive: holds up to --limit-max associations)")
    parser.add_argument("--limit-max", type=int, default=None, metavar="N",
                        help="most associations --limits holds at once (default 16)")
    parser.add_argument("--timers", action="store_true",
                        help="measure the ARTIM and idle timers (slow: up to --timer-max seconds each)")
    parser.add_argument("--timer-max", type=float, default=None, metavar="S",
                        help="longest wait for each timer (default 120)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="seconds to wait for a connection or an answer (default 10)")


def _options(args: argparse.Namespace):
    """(Session, ProbeOptions) from the command line, or a usage message."""
    from dicomconf.probe.probe import ProbeOptions, TLSOptions
    from dicomconf.probe.session import DEFAULT_CALLING_AE, Session
    from dicomconf.scu.target import check_port, parse_target
    from dicomconf.ul import constants as C
    from dicomconf.ul.pdu import ae_title_problem

    try:
        address = parse_target(args.target)
    except ValueError as exc:
        return f"--target: {exc}"
    calling = args.calling_ae if args.calling_ae is not None else DEFAULT_CALLING_AE
    for flag, title in (("--called-ae", args.called_ae), ("--calling-ae", calling)):
        problem = ae_title_problem(title)
        if problem:
            return f"{flag} {title!r} {problem}"
    if not 0 < args.timeout <= 3600:
        return "--timeout must be more than 0 and at most 3600 seconds"
    if args.limit_max is not None and not args.limits:
        return "--limit-max needs --limits"
    if args.timer_max is not None and not args.timers:
        return "--timer-max needs --timers"
    limit_max = 16 if args.limit_max is None else args.limit_max
    timer_max = 120.0 if args.timer_max is None else args.timer_max
    if not 1 <= limit_max <= 1000:
        return "--limit-max must be 1-1000"
    if not 0 < timer_max <= 3600:
        return "--timer-max must be more than 0 and at most 3600 seconds"
    tls_given = [f for f, v in (("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                                ("--tls-key", args.tls_key), ("--tls-insecure", args.tls_insecure)) if v]
    if tls_given and args.tls_port is None:
        return f"{', '.join(tls_given)} needs --tls-port"
    tls = TLSOptions()
    context = None
    if args.tls_port is not None:
        try:
            check_port(args.tls_port, "--tls-port")
        except ValueError as exc:
            return str(exc)
        from dicomconf.scu.tls import client_context

        files = {"ca": args.tls_ca, "cert": args.tls_cert, "key": args.tls_key}
        try:
            context = client_context(**files, insecure=args.tls_insecure)
        except ValueError as exc:
            return str(exc)
        tls = TLSOptions(**{k: _absolute(v) for k, v in files.items()}, insecure=args.tls_insecure,
                         context=lambda with_cert: client_context(
                             ca=files["ca"], cert=files["cert"] if with_cert else None,
                             key=files["key"] if with_cert else None, insecure=args.tls_insecure))
    user = None
    if args.user is not None:
        name, sep, passcode = args.user.partition(":")
        if not name:
            return "--user: expected NAME or NAME:PASSCODE"
        user = (name, passcode if sep else None)
    identity = None
    if user is not None:
        kind = C.USER_IDENTITY_USERNAME_PASSCODE if user[1] is not None else C.USER_IDENTITY_USERNAME
        identity = {"type": kind, "primary": user[0], "secondary": user[1] or "", "positive_response": False}
    session = Session(address.host, address.port, args.called_ae, calling, timeout=args.timeout,
                      tls_port=args.tls_port, tls=context, identity=identity)
    options = ProbeOptions(limits=args.limits, limit_max=limit_max, timers=args.timers, timer_max=timer_max,
                           user=user, tls=tls)
    return session, options


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


def _relative_paths(result, output: Path | None) -> None:
    """TLS file paths relative to the profile's directory (profiles resolve them from there)."""
    from dicomconf.probe.probe import Section

    tls = result.fields.get("tls")
    if output is None or not isinstance(tls, Section):
        return
    base = output.resolve().parent
    for key in ("ca", "cert", "key"):
        found = tls.fields.get(key)
        if found is not None and found.value:
            found.value = os.path.relpath(found.value, base)


def _check_loads(text: str, output: Path | None) -> str | None:
    """Why ``text`` does not load as a profile (``file:line: ...``, named after ``output``), or None."""
    from dicomconf.scenario.profile import SourceError, load_profile

    fd, name = tempfile.mkstemp(prefix="dicomconf-probe-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        load_profile(name)
    except SourceError as exc:
        return str(exc).replace(name, str(output) if output is not None else "<profile>")
    finally:
        os.unlink(name)
    return None


def run(args: argparse.Namespace) -> int:
    from dicomconf.probe.probe import NotAccepted, run_probe
    from dicomconf.probe.session import Unreachable, reachable
    from dicomconf.probe.writer import render

    made = _options(args)
    if isinstance(made, str):
        print(f"dicomconf probe: {made}", file=sys.stderr)
        return EXIT_USAGE
    session, options = made
    output = Path(args.output) if args.output else None
    if output is not None and not output.resolve().parent.is_dir():
        print(f"dicomconf probe: -o {args.output}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        reachable(session)
        result = run_probe(session, options, when=when,
                           progress=lambda text: print(f"dicomconf probe: {text}", file=sys.stderr, flush=True))
    except Unreachable as exc:
        print(f"dicomconf probe: target unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except NotAccepted as exc:
        print(f"dicomconf probe: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    _relative_paths(result, output)
    text = render(result)
    problem = _check_loads(text, output)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"dicomconf probe: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_USAGE
    if problem:
        print(f"dicomconf probe: the profile written does not load: {problem}", file=sys.stderr)
        return EXIT_REFUSED
    if output is not None:
        print(f"dicomconf probe: wrote {args.output} ({session.associations} association requests, "
              f"{session.connections} connections)", file=sys.stderr)
    return EXIT_OK


__all__ = ["add_arguments", "run", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "EXIT_UNREACHABLE"]
