"""The locustfile ``dicomconf load`` hands to Locust: one User whose tasks are DICOM operations.

Theory of operation
-------------------
``dicomconf load FILE.yaml`` checks the load file, puts its absolute path in
the environment variable :data:`ENV` and runs Locust with ``-f`` pointing at
this module (Locust's documented entry: ``locust -f LOCUSTFILE``).  Locust
imports it once per process (the stand-alone runner, the master, every
worker): the load file is read again here and becomes :class:`DicomUser`,
whose ``tasks`` are the file's mix with its weights and whose ``wait_time``
is its think time.  A master and its workers each read their own copy of the
file, so a distributed run needs the file on every machine.

Locust runs users as gevent greenlets and patches the standard library's
sockets to cooperate; the SCU's blocking calls with explicit timeouts
(``socket.settimeout`` then ``recv``) become cooperative waits, so one process
drives many users and a silent target costs one user its timeout, not the
process its progress.

Every step is reported through ``environment.events.request`` with a request
type per DIMSE or association service (``A-ASSOCIATE``, ``C-ECHO``,
``C-STORE``, ``C-FIND``, ``C-MOVE``, ``A-RELEASE``), the task's name, the
time in milliseconds and the bytes moved; a failure carries
:func:`dicomconf.load.operations.reason`, so Locust's failure table counts
each cause (``status 0xA700``, ``association rejected (1,1,7) ...``).

An association is opened when a task needs one and none is open.  With
``association: {reuse: false}`` (the default) every task releases it at its
end (PS3.8 7.2); with ``reuse: true`` it stays open for the user's next task
and is released when the user stops.  A failure that leaves the association
in doubt (a timeout, an abort, an unexpected reply, a closed connection)
aborts it (PS3.8 7.3); a DIMSE failure status does not.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from locust import User, between, constant

# Locust loads this file by its path: make ``dicomconf`` the package this file belongs to (a checkout's
# or an installed one), not whichever another entry of sys.path would give.
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from dicomconf.load.config import LoadConfig, Task, load_config
from dicomconf.load.operations import REQUEST_TYPES, LoadFailure, ObjectPool, Session, reason, run_op
from dicomconf.scenario.loader import SourceError
from dicomconf.scu.client import NotNegotiated

ENV = "DICOMCONF_LOAD_FILE"
CONFIG_ERROR_EXIT = 4  # the project's exit code for a bad configuration (README, exit codes)
KEEPS_ASSOCIATION = (LoadFailure, NotNegotiated)  # failures after which the association is still sound


def _read_config() -> LoadConfig:
    path = os.environ.get(ENV)
    if not path:
        sys.stderr.write(f"dicomconf load: {ENV} is not set; run `dicomconf load FILE.yaml [Locust options]`\n")
        sys.exit(CONFIG_ERROR_EXIT)
    try:
        return load_config(path)
    except SourceError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.exit(CONFIG_ERROR_EXIT)


def _tls_context(config: LoadConfig) -> Any:
    spec = config.target.tls
    if spec is None:
        return None
    from dicomconf.scu.tls import client_context

    return client_context(ca=spec.ca, cert=spec.cert, key=spec.key, insecure=spec.insecure)


CONFIG = _read_config()
POOL = ObjectPool(CONFIG)
TLS = _tls_context(CONFIG)


def _task(spec: Task) -> Callable[["DicomUser"], None]:
    def run(user: "DicomUser") -> None:
        user.run_task(spec)

    run.__name__ = spec.name
    return run


def _wait_time() -> Callable[..., float]:
    low, high = CONFIG.think_time
    return constant(low) if low == high else between(low, high)


class DicomUser(User):
    """A simulated modality: the load file's task mix against its target (docs/load.md)."""

    host = f"dicom://{CONFIG.target.called_ae}@{CONFIG.target.host}:{CONFIG.target.port}"
    wait_time = _wait_time()
    tasks = {_task(spec): spec.weight for spec in CONFIG.tasks}

    def on_start(self) -> None:
        self.session = Session(CONFIG, POOL, TLS)

    def on_stop(self) -> None:
        if self.session.is_open:
            self._timed("A-RELEASE", "release at stop", self.session.release)

    def _timed(self, request_type: str, name: str, step: Callable[..., int], *args: Any) -> BaseException | None:
        """Run one step, report it to Locust; return its exception, or None when it succeeded."""
        start = time.perf_counter()
        error: BaseException | None = None
        length = 0
        try:
            length = step(*args)
        except Exception as exc:  # every failure is reported with its reason, none ends the user
            error = exc
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - start) * 1000.0,
            response_length=length,
            exception=None if error is None else reason(error, CONFIG.association.timeout),
            context={},
        )
        return error

    def run_task(self, spec: Task) -> None:
        """Associate if needed, run the task's operation (``count`` times for a store), release
        unless associations are reused; drop an association a failure left in doubt."""
        session = self.session
        if not session.is_open and self._timed("A-ASSOCIATE", spec.name, session.open) is not None:
            return
        request_type = REQUEST_TYPES[spec.op]
        for _ in range(spec.count):
            error = self._timed(request_type, spec.name, run_op, session, spec)
            if error is not None:
                if not isinstance(error, KEEPS_ASSOCIATION):
                    session.drop()
                break
        if session.is_open and not CONFIG.association.reuse:
            if self._timed("A-RELEASE", spec.name, session.release) is not None:
                session.drop()
