"""Frames from a live network interface for ``dicomconf decode --live IFACE``.

Theory of operation
-------------------
scapy's asynchronous sniffer reads the interface (a raw socket: root or
CAP_NET_RAW) in its own thread and hands each packet to a queue; the
generator :func:`live_frames` yields them as ``(time, link type, frame
bytes)``, the same triples :func:`dicomconf.wire.pcapread.read_frames` yields
for a file, so the decoder downstream does not know the difference.  The
capture stops after ``count`` packets (every packet that passes the optional
BPF filter counts, DICOM or not) or ``seconds``, whichever comes first; Ctrl-C stops it early and what was seen is
still decoded.  :func:`live_problem` says, in one line, why sniffing cannot
start (no bound given, not root, no such interface) before scapy is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator


def live_problem(iface: str, count: int | None, seconds: float | None) -> tuple[int, str] | None:
    """(exit status, one-line reason) when a live decode cannot start; None when it can."""
    if count is None and seconds is None:
        return 2, "--live needs --count N or --seconds S to know when to stop"
    if count is not None and count <= 0:
        return 2, f"--count {count} is not a positive number of packets"
    if seconds is not None and not seconds > 0:
        return 2, f"--seconds {seconds:g} is not a positive duration"
    try:
        socket.if_nametoindex(iface)
    except OSError:
        return 1, f"no network interface named {iface!r} (see `ip link`)"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return 1, f"--live {iface} needs root (a raw socket): run it as root or with CAP_NET_RAW"
    return None


def live_frames(iface: str, count: int | None, seconds: float | None,
                started: Callable[[], None] | None = None,
                bpf: str | None = None) -> Iterator[tuple[float, int, bytes]]:
    """(time, link type, frame) of each packet sniffed on ``iface`` until ``count`` or ``seconds``;
    ``started`` is called once the socket is open (packets from then on are seen).  ``bpf``: a
    capture filter in tcpdump's syntax, applied in the kernel (a busy interface drops fewer packets
    when the rest never reaches us); a filter that does not compile is a CaptureError."""
    from scapy.config import conf
    from scapy.sendrecv import AsyncSniffer

    from dicomconf.wire.pcapread import CaptureError

    if bpf:
        from scapy.arch.common import compile_filter

        try:
            compile_filter(bpf, iface=iface)
        except Exception as exc:  # noqa: BLE001 - scapy raises its own exception classes here
            raise CaptureError(f"--filter {bpf!r} does not compile: {str(exc).strip() or type(exc).__name__}") from None

    # Linux's loopback (ARPHRD_LOOPBACK) frames are Ethernet frames scapy does not name: it warns
    # once per packet; they are taken as Ethernet below, which is what they are.
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    packets: queue.Queue = queue.Queue()
    sniffer = AsyncSniffer(iface=iface, count=count or 0, store=False, prn=packets.put, started_callback=started,
                           filter=bpf or None)
    sniffer.start()
    timer = None
    if seconds is not None:  # this sniffer takes no timeout of its own: a timer stops it
        timer = threading.Timer(seconds, lambda: sniffer.running and _stop(sniffer))
        timer.daemon = True
        timer.start()

    def wait() -> None:
        try:
            sniffer.join()
        finally:
            packets.put(None)

    threading.Thread(target=wait, name="dicomconf-live-join", daemon=True).start()
    try:
        while True:
            pkt = packets.get()
            if pkt is None:
                break
            linktype = conf.l2types.layer2num.get(type(pkt), 1)  # unnamed: Ethernet (see above)
            yield float(pkt.time), linktype, bytes(pkt)
    finally:
        if timer is not None:
            timer.cancel()
        if sniffer.running:
            _stop(sniffer)
    failure = getattr(sniffer, "exception", None)
    if failure is not None:
        raise CaptureError(f"cannot sniff on {iface}: {failure}")


def _stop(sniffer) -> None:
    with contextlib.suppress(Exception):  # it ended on its own meanwhile
        sniffer.stop()
