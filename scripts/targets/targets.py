"""Start and stop third-party SCPs on loopback, and run the conformance suite against them.

Theory of operation
-------------------
``start KIND`` launches one target SCP in its own session (so it outlives
this script), waits until its port accepts connections, records what it
needs to clean up in a state file named after its process id, and prints
``PID PORT`` (``PID PORT PROFILE`` for the Query/Retrieve targets, below).
``stop PID`` ends exactly that process (after checking that the process id
still belongs to a target this script started), and the association
processes it forked, and removes its temporary directory.  ``suite KIND``
starts the target, runs ``pytest scenarios/`` against it with the profile in
this directory, and stops it whatever happens.

Targets (the profile of each says what it claims):

* ``pynetdicom``: ``python -m pynetdicom storescp`` (Storage and
  Verification SCP), bound to 127.0.0.1.
* ``dcmtk``: DCMTK's ``/usr/bin/storescp`` (single process, the default),
  started with ``TCP_NODELAY=1`` and an output directory in a temporary
  directory.  It listens on all interfaces; the suite only ever connects
  to 127.0.0.1.
* ``dcmqrscp``: DCMTK's Query/Retrieve SCP ``/usr/bin/dcmqrscp`` (forking a
  process per association, its default), ``TCP_NODELAY=1``, with a
  configuration file of ours: one read/write storage area, empty at start,
  that any calling AE may store into and query (the scenarios store the
  known data set themselves).  No association negotiation profile
  (``-xf``): by default it accepts the storage SOP classes with the role the
  requestor proposes, which is what its C-GET needs.
* ``qrscp``: pynetdicom's ``python -m pynetdicom qrscp`` app with a
  configuration file of ours (bound to 127.0.0.1, an empty SQLite database
  and instance directory); it needs ``sqlalchemy``.

The two Query/Retrieve targets know the harness's C-MOVE destination (the
profile's ``query_retrieve.move_destination``: AE ``DICOMCONF-MOVE`` on
127.0.0.1 at a port chosen at start, ``--move-port``).  ``start`` writes the
shipped profile with that port into the target's temporary directory (the
profile a run against it must use) and prints its path as ``PROFILE``;
``suite`` uses it.

Timers are shortened (``--acse-timeout`` / ``--dimse-timeout``) so that the
scenarios that wait for ARTIM finish quickly; the profiles say the same, except
that DCMTK's profile claims no idle timer: ``storescp -td`` does not end an idle
association (its 60 s socket timeout does, without an A-ABORT).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE_DIR = Path(tempfile.gettempdir()) / "dicomconf-targets"
AE_TITLE = "ANY-SCP"
ACSE_TIMEOUT = 3  # seconds; the profiles' timers.artim
DIMSE_TIMEOUT = 6  # seconds; the profiles' timers.idle
DCMTK_STORESCP = "/usr/bin/storescp"
DCMQRSCP = "/usr/bin/dcmqrscp"
KINDS = ("pynetdicom", "dcmtk", "dcmqrscp", "qrscp")
QR_KINDS = ("dcmqrscp", "qrscp")  # the Query/Retrieve targets: they need a move destination
MOVE_AE = "DICOMCONF-MOVE"  # the harness's move destination (the Q/R profiles' query_retrieve.move_destination)
QR_MAX_ASSOCIATIONS = 16  # dcmqrscp's MaxAssociations (its profile's max_associations)
QR_MAX_STUDIES = 100  # dcmqrscp's storage area quota, in studies (the suite stores 4)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _qr_benchmark_peers():
    """benchmarks/qr_peers.py, where the Q/R peers' configuration files are written (one copy)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import qr_peers
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return qr_peers


def command(kind: str, port: int, workdir: Path, aet: str, move_port: int = 0) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start target ``kind`` on ``port`` (a Q/R target's
    configuration files are written into ``workdir``; its move destination listens on ``move_port``)."""
    env = dict(os.environ)
    destinations = {MOVE_AE: ("127.0.0.1", move_port)}
    if kind == "pynetdicom":
        argv = [sys.executable, "-m", "pynetdicom", "storescp", str(port), "-ba", "127.0.0.1", "-aet", aet,
                "-ta", str(ACSE_TIMEOUT), "-td", str(DIMSE_TIMEOUT), "-tn", str(DIMSE_TIMEOUT),
                "--ignore"]
        return argv, env
    if kind == "dcmtk":
        if not os.access(DCMTK_STORESCP, os.X_OK):
            raise SystemExit(f"{DCMTK_STORESCP} not found: install the Debian package dcmtk")
        out = workdir / "received"
        out.mkdir()
        env["TCP_NODELAY"] = "1"
        argv = [DCMTK_STORESCP, "-aet", aet, "-od", str(out), "-ta", str(ACSE_TIMEOUT),
                "-td", str(DIMSE_TIMEOUT), str(port)]
        return argv, env
    if kind == "dcmqrscp":
        if not os.access(DCMQRSCP, os.X_OK):
            raise SystemExit(f"{DCMQRSCP} not found: install the Debian package dcmtk")
        area = workdir / "area"
        area.mkdir()
        config = _qr_benchmark_peers().write_dcmqrscp_config(
            str(workdir / "dcmqrscp.cfg"), port, str(area), ae=aet, max_studies=QR_MAX_STUDIES,
            max_associations=QR_MAX_ASSOCIATIONS, destinations=destinations)
        env["TCP_NODELAY"] = "1"
        argv = [DCMQRSCP, "-c", config, "-ta", str(ACSE_TIMEOUT), "-td", str(DIMSE_TIMEOUT), str(port)]
        return argv, env
    if kind == "qrscp":
        if importlib.util.find_spec("sqlalchemy") is None:
            raise SystemExit("pynetdicom's qrscp needs sqlalchemy: pip install sqlalchemy")
        config = _qr_benchmark_peers().write_qrscp_config(
            str(workdir / "qrscp.ini"), port, str(workdir / "instances.sqlite"), str(workdir / "instances"),
            ae=aet, timeouts=(ACSE_TIMEOUT, DIMSE_TIMEOUT, DIMSE_TIMEOUT), destinations=destinations)
        argv = [sys.executable, "-m", "pynetdicom", "qrscp", "-c", config]
        return argv, env
    raise SystemExit(f"unknown target {kind!r}: one of {', '.join(KINDS)}")


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` has open (from /proc/PID/fd)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening(port: int, pid: int | None = None) -> bool:
    """True when a socket listens on TCP ``port`` (owned by process ``pid`` when given).

    Read from /proc, without connecting: a probe connection would leave the
    target an extra connection that some targets count against their
    association limit until their ARTIM timer closes it.
    """
    owned = _socket_inodes(pid) if pid is not None else None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or int(fields[1].rsplit(":", 1)[1], 16) != port:
                continue
            if owned is None or fields[9] in owned:
                return True
    return False


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Return once ``proc`` listens on ``port``; fail if it dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"target exited with status {proc.returncode} before listening on port {port}")
        if listening(port, proc.pid):
            return
        time.sleep(0.05)
    raise SystemExit(f"target did not listen on port {port} within {timeout:g}s")


def write_run_profile(kind: str, workdir: Path, move_port: int, aet: str = AE_TITLE) -> Path:
    """The shipped profile of Q/R target ``kind`` with the AE title and the move destination's port of
    this start (PS3.4 C.4.2.2: the target sends C-MOVE sub-operations there), written into ``workdir``."""
    import yaml

    data = yaml.safe_load((HERE / f"{kind}.profile.yaml").read_text(encoding="utf-8"))
    data["ae_title"] = aet
    data["query_retrieve"]["move_destination"]["port"] = move_port
    path = workdir / "profile.yaml"
    path.write_text(f"# {kind}.profile.yaml with the move destination port of this start (targets.py)\n"
                    + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def start(kind: str, port: int | None = None, aet: str = AE_TITLE, move_port: int | None = None) -> tuple[int, int]:
    """Start target ``kind``; returns (pid, port).  A Q/R target's run profile: :func:`run_profile`."""
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"dicomconf-{kind}-"))
    state = {"kind": kind, "port": port, "workdir": str(workdir)}
    if kind in QR_KINDS:
        move_port = move_port or free_port()
        state.update(move_port=move_port, profile=str(write_run_profile(kind, workdir, move_port, aet)))
    try:
        argv, env = command(kind, port, workdir, aet, move_port or 0)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    log = open(workdir / "target.log", "wb")
    proc = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    STATE_DIR.mkdir(exist_ok=True)
    state["argv"] = argv
    (STATE_DIR / f"{proc.pid}.json").write_text(json.dumps(state), encoding="utf-8")
    try:
        wait_listening(port, proc)
    except SystemExit:
        stop(proc.pid)
        raise
    return proc.pid, port


def run_profile(pid: int, kind: str) -> Path:
    """The profile a run against target ``pid`` uses: for a Q/R target the copy :func:`start` wrote
    (with its move destination port), else the shipped ``KIND.profile.yaml``."""
    state_file = STATE_DIR / f"{pid}.json"
    if kind in QR_KINDS and state_file.is_file():
        return Path(json.loads(state_file.read_text(encoding="utf-8"))["profile"])
    return HERE / f"{kind}.profile.yaml"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (dcmqrscp forks one per association), from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop(pid: int) -> None:
    """Stop the target with process id ``pid`` (started by :func:`start`) and remove its files."""
    state_file = STATE_DIR / f"{pid}.json"
    if not state_file.is_file():
        raise SystemExit(f"process {pid} was not started by this script (no {state_file})")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if _alive(pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        if cmdline and cmdline[0].decode(errors="replace") != state["argv"][0]:
            raise SystemExit(f"process {pid} is no longer the target this script started; not stopping it")
        forked = [child for child in _children(pid) if _alive(child)]
        for target in (pid, *forked):
            try:
                os.kill(target, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        for target in (pid, *forked):
            if _alive(target):
                try:
                    os.kill(target, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    shutil.rmtree(state["workdir"], ignore_errors=True)
    state_file.unlink(missing_ok=True)


def plugin_args() -> list[str]:
    """``-p dicomconf.pytest_plugin``: a no-op where the pytest11 entry point (of the same name) loads it."""
    return ["-p", "dicomconf.pytest_plugin"]


def suite(kind: str, extra: list[str]) -> int:
    """Run ``pytest scenarios/`` against a freshly started target; returns pytest's exit status."""
    pid, port = start(kind)
    try:
        argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios"), *plugin_args(),
                "--target", f"127.0.0.1:{port}", "--profile", str(run_profile(pid, kind)),
                "--called-ae", AE_TITLE, *extra]
        print("$", " ".join(argv), flush=True)
        return subprocess.call(argv, cwd=REPO)
    finally:
        stop(pid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("start", help="start a target; prints PID PORT")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--aet", default=AE_TITLE, help=f"the target's AE title (default {AE_TITLE})")
    p.add_argument("--move-port", type=int, default=None,
                   help=f"Q/R targets: the port of the move destination {MOVE_AE} on 127.0.0.1 (default: a free one)")
    p = sub.add_parser("stop", help="stop a target started by 'start', by its process id")
    p.add_argument("pid", type=int)
    p = sub.add_parser("suite", help="start a target, run the scenarios against it, stop it")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.action == "start":
        pid, port = start(args.kind, args.port, args.aet, args.move_port)
        print(pid, port, *([run_profile(pid, args.kind)] if args.kind in QR_KINDS else []))
        return 0
    if args.action == "stop":
        stop(args.pid)
        return 0
    extra = [a for a in args.pytest_args if a != "--"]
    return suite(args.kind, extra)


if __name__ == "__main__":
    sys.exit(main())
