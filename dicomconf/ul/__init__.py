"""The sans-IO DICOM Upper Layer core (PS3.8): codec, framing, DIMSE, state machine, negotiation.

No module in this package performs I/O.  Drivers feed bytes in and write the
bytes that come out; see ``docs/architecture.md``.
"""
