"""Errors raised by the sans-IO core.

Two kinds, as in h11: :class:`LocalProtocolError` is our own misuse of the
API (sending a primitive the state machine does not allow, encoding a field
that does not fit), :class:`RemoteProtocolError` is the peer's violation of
PS3.8.  A remote error names the clause broken and carries the A-ABORT the
receiver should answer with (PS3.8 9.3.8, Table 9-26): ``source`` 2
(service-provider) and a ``reason`` 0-6.
"""

from __future__ import annotations

from dicomconf.ul import constants as C


class ULError(Exception):
    """Base class of every error the core raises."""


class LocalProtocolError(ULError):
    """The local user asked for something the protocol does not allow."""


class RemoteProtocolError(ULError):
    """The peer sent bytes that violate PS3.8.

    ``clause`` cites the standard, ``offset`` is the byte offset of the fault
    inside the PDU where known, and (``source``, ``reason``) is the A-ABORT
    the receiver should send (PS3.8 9.3.8).
    """

    def __init__(
        self,
        message: str,
        clause: str,
        *,
        reason: int = C.ABORT_REASON_NOT_SPECIFIED,
        source: int = C.ABORT_SOURCE_PROVIDER,
        offset: int | None = None,
    ) -> None:
        super().__init__(f"{message} ({clause})")
        self.message = message
        self.clause = clause
        self.source = source
        self.reason = reason
        self.offset = offset

    @property
    def abort(self) -> tuple[int, int]:
        """The (source, reason) of the A-ABORT that answers this error."""
        return (self.source, self.reason)
