"""The scriptable SCU: a raw :class:`Connection` and the high-level :class:`SCU`."""

from dicomconf.scu.client import SCU, Aborted, NotNegotiated, Rejected, UnexpectedReply
from dicomconf.scu.connection import Closed, Connection, Received, Silence

__all__ = [
    "Connection",
    "Received",
    "Closed",
    "Silence",
    "SCU",
    "Rejected",
    "Aborted",
    "UnexpectedReply",
    "NotNegotiated",
]
