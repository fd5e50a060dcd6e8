"""Running the reference SCP: which event loop, the allocator, and a server on its own thread.

Theory of operation
-------------------
:func:`event_loop_factory` picks the loop the server runs on (uvloop when it
is installed, asyncio's own otherwise, or what is asked for).
:func:`tune_allocator` is for the standalone ``dicomconf scp`` process only:
it keeps freed receive buffers in the C heap.  :func:`run_in_thread` starts a
:class:`~dicomconf.scp.server.ReferenceSCP` on a new event-loop thread and
returns a :class:`SCPHandle` once it listens: how tests, the pytest plugin
and embedding programs run it in-process on a free port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable

from dicomconf.scp.config import ConfigError, SCPConfig
from dicomconf.scp.server import ReferenceSCP
from dicomconf.scp.storage import StoredInstance


class SCPHandle:
    """A :class:`ReferenceSCP` running on its own event-loop thread."""

    def __init__(self, scp: ReferenceSCP, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.scp = scp
        self.loop = loop
        self.thread = thread
        self.port: int = scp.port  # type: ignore[assignment]
        self.tls_port: int | None = scp.tls_port
        self._stopped = False

    @property
    def stored(self) -> list[StoredInstance]:
        return self.scp.stored

    def call(self, fn, *args) -> Any:
        """Run ``fn(*args)`` on the server's loop thread and return its result."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            asyncio.run_coroutine_threadsafe(self.scp.stop(), self.loop).result(timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)

    def __enter__(self) -> "SCPHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


EVENT_LOOPS = ("auto", "asyncio", "uvloop")
# glibc mallopt parameters (malloc.h) and the values the standalone server sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 4 << 20
_TRIM_THRESHOLD = 32 << 20


def tune_allocator() -> bool:
    """Keep freed receive and message buffers in the C heap for reuse (glibc only); True if applied.

    A C-STORE allocates a 256 KiB read buffer per socket read and one buffer
    the size of the data set per message.  glibc serves blocks above its mmap
    threshold with a fresh mapping and returns heap tops above its trim
    threshold to the kernel, so every such buffer pays page faults on first
    touch: measured at a third of the time of a 100 x 1 MiB store at 16 KiB
    PDUs (docs/benchmarks/scp.md).  Up to 4 MiB blocks come from the heap and
    up to 32 MiB of free heap is kept.  Process-wide, so only the standalone
    ``dicomconf scp`` process calls it; an embedding program decides for itself.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def event_loop_factory(kind: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop to run on: ``uvloop`` (an optional accelerator) or the standard library's.

    "auto" takes uvloop when it is installed and asyncio's own loop otherwise;
    "uvloop" without uvloop installed is a :class:`ConfigError`.
    """
    if kind not in EVENT_LOOPS:
        raise ConfigError(f"<command line>:0: event loop must be one of {', '.join(EVENT_LOOPS)}, not {kind!r}")
    if kind == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise ConfigError("<command line>:0: event loop uvloop asked for, but uvloop is not installed") from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_in_thread(config: SCPConfig, event_loop: str = "asyncio", hooks: Any = None) -> SCPHandle:
    """Start a :class:`ReferenceSCP` on a new event-loop thread; return once it listens.

    ``event_loop`` is as for :func:`event_loop_factory`; embedded servers use
    asyncio's own loop unless asked.  ``hooks`` (:class:`dicomconf.scp.hooks.Hooks`)
    makes a variant of the SCP.
    """
    box: dict[str, Any] = {}
    ready = threading.Event()
    new_loop = event_loop_factory(event_loop)

    def main() -> None:
        loop = new_loop()
        asyncio.set_event_loop(loop)
        try:
            scp = ReferenceSCP(config, hooks)
            loop.run_until_complete(scp.start())
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            loop.close()
            return
        box["scp"], box["loop"] = scp, loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=main, name="dicomconf-scp", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        thread.join()
        raise box["error"]
    return SCPHandle(box["scp"], box["loop"], thread)
