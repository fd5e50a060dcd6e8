"""``dicomconf proxy``: a relay between a real SCU and a real SCP that judges both peers.

Theory of operation
-------------------
:mod:`.relay` relays the bytes of each connection both ways unchanged (or
through the faults of :mod:`.faults`), :mod:`.judge` checks every PDU of
both peers with the findings of the scenarios and ``dicomconf decode``
(requestor and acceptor rules, the PS3.8 Table 9-10 position of each peer),
:mod:`.report` writes one capture per association and a report in the formats
of a run, :mod:`.tlsleg` terminates and re-originates TLS on either leg
(PS3.15 B.1) with captures of the records and key logs, and :mod:`.cli` is the
command.
"""
