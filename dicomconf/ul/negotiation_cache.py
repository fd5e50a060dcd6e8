"""Negotiation answers kept for requests that repeat byte for byte (PS3.8 9.3.3-9.3.4, PS3.7 D.3).

Theory of operation
-------------------
A modality sends the same A-ASSOCIATE-RQ on every association.  The PDU
decoder keeps whole A-ASSOCIATE-RQs by their exact bytes
(:mod:`dicomconf.ul.pdu`), so a repeated request decodes to the very object
decoded the first time; :class:`NegotiationCache` keeps what
:func:`~dicomconf.ul.negotiation.negotiate` answered to it, keyed by that
object (its bytes, in effect), the policy object, and whether the
association limit was reached (the only other input of ``negotiate``).  The
accepted reply's bytes are pinned (:func:`~dicomconf.ul.pdu.pin_encoding`),
so a hit costs neither the negotiation nor the A-ASSOCIATE-AC encoding, and
gives the same bytes as a miss.

What makes this sound:

* ``negotiate`` is a pure function of the request, the policy and
  ``active_associations >= max_associations``;
* the request is a frozen dataclass of immutable values (the decoder's
  cache never keeps one carrying a user identity, and neither does this
  cache: credentials do not outlive their association);
* the policy must not change while it is in use: :func:`frozen_policy`
  gives a copy whose mappings are read-only, which is what a server hands
  the cache; a new policy object is a new key;
* the :class:`~dicomconf.ul.negotiation.Negotiated` answer is shared by the
  associations that hit it: its dicts are read, never changed, by its users.

Bounded: at most ``entries`` answers; past that the oldest is dropped and
its reply unpinned.  Keys hold the request and policy objects themselves, so
an identity is never reused while its entry lives.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from dicomconf.ul.items import UserIdentityRQ
from dicomconf.ul.negotiation import AcceptorPolicy, Negotiated, negotiate
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, pin_encoding, unpin_encoding

_MAPPINGS = ("supported", "roles", "users", "extended_negotiation")


def frozen_policy(policy: AcceptorPolicy) -> AcceptorPolicy:
    """``policy`` with read-only copies of its mappings (what :class:`NegotiationCache` may key on)."""
    changes = {
        name: MappingProxyType(dict(getattr(policy, name)))
        for name in _MAPPINGS
        if getattr(policy, name) is not None and not isinstance(getattr(policy, name), MappingProxyType)
    }
    return dataclasses.replace(policy, **changes) if changes else policy


class NegotiationCache:
    """:func:`negotiate`, answered from memory for a request object seen before (see the module docstring)."""

    __slots__ = ("entries", "hits", "misses", "_answers")

    def __init__(self, entries: int = 64) -> None:
        self.entries = entries
        self.hits = self.misses = 0
        # (id(rq), id(policy), limit reached) -> (rq, policy, answer)
        self._answers: dict[tuple[int, int, bool], tuple[AAssociateRQ, AcceptorPolicy, Negotiated]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def negotiate(self, rq: AAssociateRQ, policy: AcceptorPolicy, *, active_associations: int = 0) -> Negotiated:
        """What ``negotiate(rq, policy, active_associations=...)`` answers (PS3.8 9.3.3-9.3.4)."""
        limit = policy.max_associations
        key = (id(rq), id(policy), limit is not None and active_associations >= limit)
        entry = self._answers.get(key)
        if entry is not None and entry[0] is rq and entry[1] is policy:
            self.hits += 1
            return entry[2]
        self.misses += 1
        answer = negotiate(rq, policy, active_associations=active_associations)
        subs = rq.user_information.sub_items
        if (type(rq.reserved) is not bytes or type(rq.presentation_contexts) is not tuple or type(subs) is not tuple
                or any(type(sub) is UserIdentityRQ for sub in subs)):
            return answer  # a mutable field, or credentials: answered, not kept
        answers = self._answers
        if len(answers) >= self.entries:
            self._drop(next(iter(answers)))
        if isinstance(answer.reply, AAssociateAC):
            pin_encoding(answer.reply)
        answers[key] = (rq, policy, answer)
        return answer

    def clear(self) -> None:
        for key in list(self._answers):
            self._drop(key)

    def _drop(self, key: tuple[int, int, bool]) -> None:
        entry = self._answers.pop(key, None)
        if entry is not None and isinstance(entry[2].reply, AAssociateAC):
            unpin_encoding(entry[2].reply)


__all__ = ["NegotiationCache", "frozen_policy"]
