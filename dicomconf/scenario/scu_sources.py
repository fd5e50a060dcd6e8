"""The SCU under test: started for each SCU-testing scenario, three ways.

Theory of operation
-------------------
A scenario of ``role: scp`` needs an SCU that connects to the fake SCP's
listener while the scenario plays.  :func:`make_source` picks how that SCU
comes, from the options:

* :class:`CommandSCU` (``--scu-command "CMD"``): the command is started once
  the listener is up, with the placeholders ``{host} {port} {called_ae}
  {calling_ae} {file}`` filled in (``{file}``: a DICOM object written with
  pydicom for the scenario, a CT image by default); its output is kept, and
  when the scenario ends it is given a few seconds to exit, then terminated
  and killed by its own process id (its whole process group).  The exit
  status and the output go in the report.
* :class:`DeviceSCU` (``--scu-listen HOST:PORT`` alone): dicomconf listens
  there and waits, bounded, for a device on the network configured to send
  to it; the terminal says what to trigger for each scenario.
* :class:`EmbeddedSCU` (neither): the reference SCU
  (:mod:`dicomconf.scu.app`) does the scenario's operation on a thread, with
  the timeouts of the SCU profile.

Each source's :meth:`~SCUSource.start` returns a handle whose ``stop()``
returns the record for the report: how the SCU was run, its exit status and
the tail of its output.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import string
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dicomconf.wire.secrets import mask_argv

PLACEHOLDERS = ("host", "port", "called_ae", "calling_ae", "file")
OUTPUT_KEPT = 4000  # characters of an SCU command's output kept for the report
EXIT_GRACE = 5.0  # s a command may take to exit after the scenario ended, before it is stopped


class SCUSetupError(ValueError):
    """The options that name the SCU under test cannot work (a usage error)."""


def command_problem(command: str) -> str | None:
    """Why an ``--scu-command`` cannot be used (an unknown placeholder, no program), or None."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        return f"--scu-command {command!r}: {exc}"
    if not words:
        return "--scu-command is empty"
    if shutil.which(words[0]) is None:
        return f"--scu-command: no program {words[0]!r} (not found, or not executable)"
    for word in words:
        try:
            names = [name for _, name, _, _ in string.Formatter().parse(word)]
        except ValueError as exc:
            return f"--scu-command: {word!r}: {exc} (write {{{{ and }}}} for braces)"
        for name in names:
            if name is not None and name not in PLACEHOLDERS:
                return (f"--scu-command: unknown placeholder {{{name}}}; allowed: "
                        + " ".join(f"{{{p}}}" for p in PLACEHOLDERS) + " (write {{ and }} for braces)")
    return None


def write_object(path: Path, sop_class: str = "ct") -> Path:
    """A small DICOM object for an SCU to send (PS3.10 file, explicit VR little endian)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from dicomconf.scu.client import resolve_uid

    ds = pydicom.Dataset()
    ds.SOPClassUID = resolve_uid(sop_class)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "DICOMCONF^SCU^TEST"
    ds.PatientID = "DICOMCONF-SCU"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(64 * 64 * 2)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class Call:
    """What the SCU under test is asked to do in one scenario."""

    host: str
    port: int
    called_ae: str
    calling_ae: str
    operation: str
    file: Path
    scenario_id: str
    cancel: bool = False  # the scenario requires an SCU that cancels its C-FIND (SCU profile: cancels)


class Handle:
    """A started SCU; ``stop()`` returns its record."""

    def stop(self) -> dict[str, Any]:
        raise NotImplementedError


class SCUSource:
    """How the SCU under test comes for each scenario (see the module docstring)."""

    mode = ""
    listen_host = "127.0.0.1"
    listen_port = 0
    accept_within = 30.0

    def start(self, call: Call) -> Handle:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


# ---------------------------------------------------------------- embedded


class _Thread(Handle):
    def __init__(self, target: Callable[[], tuple[int, list[str]]], grace: float) -> None:
        self.result: tuple[int, list[str]] | None = None
        self.grace = grace
        self.thread = threading.Thread(target=self._run, args=(target,), name="dicomconf-reference-scu", daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], tuple[int, list[str]]]) -> None:
        self.result = target()

    def stop(self) -> dict[str, Any]:
        self.thread.join(self.grace)
        status, lines = self.result if self.result is not None else (None, ["still running when the scenario ended"])
        return {"mode": "embedded", "exit_status": status, "output": "\n".join(lines)[-OUTPUT_KEPT:]}


class EmbeddedSCU(SCUSource):
    """The reference SCU on a thread (:mod:`dicomconf.scu.app`), with the SCU profile's timeouts."""

    mode = "embedded"
    accept_within = 10.0

    def __init__(self, profile: Any, scu_class: Any = None) -> None:
        self.profile = profile
        self.scu_class = scu_class

    def describe(self) -> str:
        return "embedded reference SCU"

    def start(self, call: Call) -> Handle:
        from dicomconf.scu.app import Job, ReferenceSCU, perform

        t = self.profile.timeouts
        job = Job(call.host, call.port, "echo" if call.operation == "any" else call.operation,
                  call.called_ae, call.calling_ae, str(call.file),
                  connect_timeout=t.connect or 5.0, association_timeout=t.association or 5.0,
                  dimse_timeout=t.dimse or 5.0, release_timeout=t.release or 5.0,
                  cancel_after=1 if call.cancel else None)
        if self.profile.max_pdu_length is not None:
            job.max_pdu_length = self.profile.max_pdu_length
        scu_class = self.scu_class or ReferenceSCU
        return _Thread(lambda: perform(job, scu_class), t.longest(5.0) + EXIT_GRACE)


# ---------------------------------------------------------------- a command


class _Process(Handle):
    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        self.out = open(log, "w+b")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env={**os.environ, "TCP_NODELAY": "1"})

    def stop(self) -> dict[str, Any]:
        stopped = None
        try:
            self.proc.wait(EXIT_GRACE)
        except subprocess.TimeoutExpired:
            stopped = "terminated"
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                stopped = "killed"
                self._signal(signal.SIGKILL)
                self.proc.wait(5.0)
        self.out.seek(0)
        output = self.out.read().decode("utf-8", "replace")
        self.out.close()
        record = {"mode": "command", "command": shlex.join(mask_argv(self.argv)), "pid": self.proc.pid,
                  "exit_status": self.proc.returncode, "output": output[-OUTPUT_KEPT:]}
        if stopped:
            record["stopped"] = f"{stopped}: still running {EXIT_GRACE:g}s after the scenario ended"
        return record

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # its own session: the command and what it started
        except (ProcessLookupError, PermissionError):
            pass


class CommandSCU(SCUSource):
    """An SCU started as a command for each scenario (``--scu-command``)."""

    mode = "command"

    def __init__(self, command: str, listen_host: str = "127.0.0.1", listen_port: int = 0,
                 accept_within: float = 30.0) -> None:
        problem = command_problem(command)
        if problem:
            raise SCUSetupError(problem)
        self.command = command
        self.listen_host, self.listen_port, self.accept_within = listen_host, listen_port, accept_within
        self.logs = Path(tempfile.mkdtemp(prefix="dicomconf-scu-"))

    def describe(self) -> str:
        try:
            shown = shlex.join(mask_argv(shlex.split(self.command)))
        except ValueError:
            shown = self.command  # command_problem() refused it already
        return f"command: {shown}"

    def start(self, call: Call) -> Handle:
        values = {"host": call.host, "port": str(call.port), "called_ae": call.called_ae,
                  "calling_ae": call.calling_ae, "file": str(call.file)}
        argv = [word.format_map(values) for word in shlex.split(self.command)]
        log = self.logs / f"{call.scenario_id}.log"
        try:
            return _Process(argv, log)
        except OSError as exc:
            raise SCUSetupError(f"--scu-command: cannot start {argv[0]!r}: {exc}") from None


# ---------------------------------------------------------------- a device


class _Nothing(Handle):
    def stop(self) -> dict[str, Any]:
        return {"mode": "device"}


class DeviceSCU(SCUSource):
    """A device on the network that sends to us (``--scu-listen`` alone): say what to trigger."""

    mode = "device"

    def __init__(self, listen_host: str, listen_port: int, accept_within: float = 120.0,
                 tell: Callable[[str], None] | None = None) -> None:
        self.listen_host, self.listen_port, self.accept_within = listen_host, listen_port, accept_within
        self.tell = tell or (lambda text: print(text, flush=True))

    def describe(self) -> str:
        return f"a device sending to {self.listen_host}:{self.listen_port}"

    def start(self, call: Call) -> Handle:
        what = {"echo": "a C-ECHO (verification)", "store": "a C-STORE of any image", "find": "a C-FIND query",
                "any": "its usual work (an echo will do)"}[call.operation]
        self.tell(f"\ndicomconf: scenario {call.scenario_id}: make the SCU send {what} to AE {call.called_ae} "
                  f"at {call.host}:{call.port} now (waiting up to {self.accept_within:g}s)")
        return _Nothing()


def make_source(command: str | None, listen: str | None, profile: Any, *, wait: float | None = None,
                tell: Callable[[str], None] | None = None) -> SCUSource:
    """The SCU source the options name (see the module docstring); SCUSetupError when they cannot work."""
    host, port = "127.0.0.1", 0
    if listen:
        from dicomconf.scu.target import parse_target

        try:
            address = parse_target(listen, default_port=0)
        except ValueError as exc:
            raise SCUSetupError(f"--scu-listen {listen!r}: {exc}") from None
        host, port = address.host, address.port
    if command:
        return CommandSCU(command, host, port, wait or 30.0)
    if listen:
        return DeviceSCU(host, port, wait or 120.0, tell)
    return EmbeddedSCU(profile)


def wait_exit(handle: Handle) -> dict[str, Any]:
    """Stop ``handle`` and time it (for reports)."""
    t0 = time.monotonic()
    record = handle.stop()
    record["stop_s"] = round(time.monotonic() - t0, 3)
    return record
