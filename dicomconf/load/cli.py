"""``dicomconf load FILE.yaml [Locust options]``: load-test a DICOM SCP with Locust.

Theory of operation
-------------------
The load file is checked here first (:func:`dicomconf.load.config.load_config`):
a fault is one ``file:line: ...`` line per problem and exit code 4, before
Locust starts.  Then this process becomes Locust (``os.execv`` of
``python -m locust -f <dicomconf/load/locustfile.py> ARGS``), with the load
file's absolute path in :data:`~dicomconf.load.locustfile.ENV`: Locust's own
command line, web UI, ``--headless`` statistics and CSV output and its
``--master`` / ``--worker`` modes all work as Locust documents them, and the
process id stays the one the caller started (signals, Ctrl-C and stopping
by pid reach Locust itself).  Everything after ``FILE.yaml`` is Locust's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from dicomconf.load.config import load_config
from dicomconf.scenario.loader import SourceError

USAGE_EXIT = 4
ENV = "DICOMCONF_LOAD_FILE"  # the same name as dicomconf.load.locustfile.ENV (which imports Locust)
LOCUSTFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locustfile.py")
_OWN_OPTIONS = ("-f", "--locustfile")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "dicomconf load FILE.yaml [--check] [Locust options ...]"
    parser.epilog = (
        "Locust options follow the file: --headless -u USERS -r RATE -t 30s --csv PREFIX; "
        "--master / --worker --master-host HOST for a distributed run (docs/load.md)."
    )
    parser.add_argument("file", metavar="FILE.yaml", help="the load file (docs/load.md)")
    parser.add_argument("locust_args", nargs=argparse.REMAINDER, metavar="LOCUST-OPTIONS",
                        help="passed to Locust as they are (see `locust --help`)")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return USAGE_EXIT
    rest = list(args.locust_args)
    if "--check" in rest:
        kinds = ", ".join(f"{t.name} x{t.weight}" for t in config.tasks)
        print(f"{args.file}: ok: {config.target.host}:{config.target.port} ({config.target.called_ae}); tasks: {kinds}")
        return 0
    clash = [a for a in rest if a.split("=", 1)[0] in _OWN_OPTIONS]
    if clash:
        print(f"dicomconf load: {clash[0]} is set by dicomconf load (the locustfile is its own)", file=sys.stderr)
        return USAGE_EXIT
    if importlib.util.find_spec("locust") is None:
        print("dicomconf load: Locust is not installed; pip install 'dicomconf[load]'", file=sys.stderr)
        return USAGE_EXIT
    os.environ[ENV] = os.path.abspath(args.file)
    # gevent's default resolver runs every lookup on a thread pool, even of a literal address; the
    # target is looked up once per process (dicomconf.load.operations.resolve), so block instead.
    os.environ.setdefault("GEVENT_RESOLVER", "block")
    argv = [sys.executable, "-m", "locust", "-f", LOCUSTFILE, *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 0  # not reached
