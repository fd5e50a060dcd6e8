"""``dicomconf scp``: run the reference SCP in the foreground.

Binds 127.0.0.1:11112 unless told otherwise (``--host`` takes any address,
``::`` for every IPv6 and IPv4 address), logs one line per association
(peer, AE titles, contexts accepted, outcome, duration) and, with ``-v``, a
PDU trace.  Ctrl-C or SIGTERM stops accepting, lets in-flight stores finish
and answer, then exits 0.  A bad configuration exits 2 with ``file:line``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time

from dicomconf.scp.config import STORAGE_KINDS, ConfigError, SCPConfig
from dicomconf.scp.storage import StorageSetupError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (see docs/scp.md)")
    parser.add_argument("--host", help="address to listen on: an IPv4 or IPv6 address or a host name; "
                                       "0.0.0.0 for every IPv4 address, :: for every address (IPv6 and, "
                                       "where the OS allows, IPv4); default 127.0.0.1")
    parser.add_argument("--port", type=int, help="port to bind (default 11112; 0 picks a free one)")
    parser.add_argument("--ae", action="append", metavar="TITLE", help="AE title to answer to (repeatable)")
    parser.add_argument("--storage", choices=STORAGE_KINDS, help="where C-STORE data sets go")
    parser.add_argument("--storage-dir", dest="storage_dir", metavar="DIR", help="directory for --storage directory")
    parser.add_argument("--memory-limit", dest="memory_limit", metavar="SIZE",
                        help="most bytes memory storage keeps (e.g. 256MiB, 2GiB; 'none' for no bound); "
                             "a C-STORE past it answers A700 (default 256MiB)")
    parser.add_argument("--index", metavar="PATH",
                        help="SQLite index of stored instances: a file, :memory:, none, or default "
                             "(index.sqlite in --storage-dir; :memory: for memory storage)")
    parser.add_argument("--load", action="append", metavar="DIR",
                        help="index the DICOM files under DIR at start (repeatable; directory storage "
                             "references them in place, memory storage reads them in)")
    parser.add_argument("--move-destination", action="append", metavar="AE=HOST:PORT",
                        help="a C-MOVE destination (and commitment report receiver); repeatable")
    parser.add_argument("--worklist", metavar="PATH",
                        help="Modality Worklist items: a YAML file or a directory of DICOM files")
    parser.add_argument("--services", metavar="LIST",
                        help="comma-separated services to offer beyond echo and store (find, move, get, "
                             "commitment, mpps, worklist), or none (default: every one whose need is met)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log a trace of every PDU")
    parser.add_argument("--show-secrets", dest="show_secrets", action="store_true",
                        help="let the -v trace show user identity passcodes and tokens (masked as *** otherwise)")
    parser.add_argument("--workers", type=int, nargs="?", const=os.cpu_count() or 1, metavar="N",
                        help="serve from N processes sharing the port (SO_REUSEPORT), started and stopped "
                             "by this one; N defaults to the CPU count; directory or discard storage")
    parser.add_argument(
        "--event-loop", dest="event_loop", choices=("auto", "asyncio", "uvloop"), default="auto",
        help="event loop: uvloop if installed (auto, the default), or asyncio's own",
    )


class LineFormatter(logging.Formatter):
    """``%(asctime)s %(levelname)s %(message)s``, as :class:`logging.Formatter` writes it, cheaper.

    The date and time to the second are formatted once per second rather than
    once per line (the server logs a line per association); a record with an
    exception or stack goes through the standard formatter.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self._second: int | None = None
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        record.message = record.getMessage()
        return f"{self._stamp},{int(record.msecs):03d} {record.levelname} {record.message}"


def _configure_logging(verbose: bool) -> None:
    # The format shows no thread, process or source line, so records need not look them up (a getpid per
    # line, a walk of the stack: the "Optimization" section of the logging HOWTO).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    root = logging.getLogger("dicomconf")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


async def _serve(config: SCPConfig) -> int:
    from dicomconf.scp.server import ReferenceSCP

    scp = ReferenceSCP(config)
    await scp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"dicomconf scp listening on {host}:{scp.port}"
          + (f" (TLS on {scp.tls_port})" if scp.tls_port else ""), file=sys.stderr, flush=True)
    if scp.tls_port and (config.tls.min_version or config.tls.ciphers):
        print(f"dicomconf scp: the TLS listener is outside the BCP 195 profile (PS3.15 B.12): "
              f"min_version {config.tls.min_version or 'TLSv1.2'}, ciphers {config.tls.ciphers or 'the profile'}",
              file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        logging.getLogger("dicomconf.scp").info("stopping: finishing in-flight stores")
        await scp.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        config = SCPConfig.from_yaml(args.config) if args.config else SCPConfig()
        config.apply_args(args)
    except ConfigError as exc:
        print(f"dicomconf scp: {exc}", file=sys.stderr)
        return 2
    _configure_logging(config.verbose)
    from dicomconf.scp.runtime import event_loop_factory, tune_allocator

    tune_allocator()
    workers = getattr(args, "workers", None)
    try:
        if workers is not None and workers != 1:
            from dicomconf.scp.workers import run_workers

            return run_workers(config, workers, getattr(args, "event_loop", "auto"))
        loop_factory = event_loop_factory(getattr(args, "event_loop", "auto"))
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve(config))
    except (ConfigError, StorageSetupError) as exc:
        print(f"dicomconf scp: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dicomconf scp: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
