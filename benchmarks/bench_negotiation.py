"""Negotiation benchmarks: ``negotiate`` against pynetdicom's acceptor negotiation, same requests, same run.

    python benchmarks/bench_negotiation.py [--runs 5]

Two requests, both answered with the default policy (Verification and every
storage SOP class, 12 transfer syntaxes each):

(a) 5 presentation contexts (3 transfer syntaxes each) and one role item;
(b) 128 presentation contexts, the most PS3.8 allows (storage classes, the
    first proposing a transfer syntax nobody supports), and 4 role items.

dicomconf: ``negotiate(rq, policy)``, which builds the whole A-ASSOCIATE-AC
(contexts, roles, user information), then ``check_reply`` on the result.
pynetdicom: ``presentation.negotiate_as_acceptor(rq_contexts, ac_contexts,
roles)``, contexts and roles only, with its ``PresentationContext`` objects
built beforehand (not counted, which favours it).  Each measurement runs
``--runs`` times (each run loops for at least 0.3 s after a warm-up); the
table gives the best run, the median and the spread ((max - min) / median),
the machine's noise.  Ratios use medians.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_core import measure, summary  # noqa: E402

from dicomconf.ul import constants as C  # noqa: E402
from dicomconf.ul.items import (  # noqa: E402
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)
from dicomconf.ul.negotiation import AcceptorPolicy, check_reply, default_supported, negotiate  # noqa: E402
from dicomconf.ul.pdu import AAssociateRQ  # noqa: E402

SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50")


def request(n_contexts: int, n_roles: int) -> AAssociateRQ:
    storage = [uid for uid in default_supported() if uid != C.VERIFICATION_SOP_CLASS]
    abstracts = [C.VERIFICATION_SOP_CLASS] + storage[: n_contexts - 1]
    contexts = [PresentationContextRQ(2 * i + 1, a, SYNTAXES) for i, a in enumerate(abstracts)]
    contexts[0] = PresentationContextRQ(1, abstracts[0], ("1.2.3.4.5.6.7",))
    roles = tuple(RoleSelection(a, 1, 1) for a in abstracts[1 : 1 + n_roles])
    ui = UserInformation(
        (MaximumLength(16384), ImplementationClassUID("1.2.826.0.1.3680043.9.3811.2"), ImplementationVersionName("BENCH"))
        + roles
    )
    return AAssociateRQ("DICOMCONF", "BENCH", tuple(contexts), ui)


def pynetdicom_inputs(rq: AAssociateRQ, policy: AcceptorPolicy):
    from pynetdicom.presentation import PresentationContext

    rq_contexts = []
    for pc in rq.presentation_contexts:
        cx = PresentationContext()
        cx.context_id, cx.abstract_syntax, cx.transfer_syntax = pc.context_id, pc.abstract_syntax, list(pc.transfer_syntaxes)
        rq_contexts.append(cx)
    ac_contexts = []
    for abstract, syntaxes in policy.supported.items():
        cx = PresentationContext()
        cx.abstract_syntax, cx.transfer_syntax = abstract, list(syntaxes)
        cx.scu_role, cx.scp_role = True, False
        ac_contexts.append(cx)
    roles = {r.sop_class_uid: (bool(r.scu_role), bool(r.scp_role)) for r in rq.user_information.role_selections}
    return rq_contexts, ac_contexts, roles


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    try:
        from pynetdicom.presentation import negotiate_as_acceptor
    except ImportError:
        print("pynetdicom is not installed: nothing to compare with", file=sys.stderr)
        return 1
    policy = AcceptorPolicy()
    rows = []
    for label, rq in (("(a) 5 contexts", request(5, 1)), ("(b) 128 contexts", request(128, 4))):
        result = negotiate(rq, policy)
        assert len(result.accepted) == len(rq.presentation_contexts) - 1 and check_reply(rq, result.reply) == []
        rq_cx, ac_cx, roles = pynetdicom_inputs(rq, policy)
        ours = summary(measure(lambda: negotiate(rq, policy), args.runs))
        checked = summary(measure(lambda: check_reply(rq, result.reply), args.runs))
        theirs = summary(measure(lambda: negotiate_as_acceptor(rq_cx, ac_cx, roles), args.runs))
        rows.append((f"{label}: negotiate (whole AC)", ours, None))
        rows.append((f"{label}: pynetdicom negotiate_as_acceptor", theirs, theirs[1] / ours[1]))
        rows.append((f"{label}: check_reply", checked, None))
    print(f"{'measurement':58} {'best':>10} {'median':>10} {'spread':>7} {'ratio':>7}")
    for name, (best, med, spread), ratio in rows:
        ratio_text = "" if ratio is None else f"{ratio:6.1f}x"
        print(f"{name:58} {best * 1e6:8.1f}us {med * 1e6:8.1f}us {spread * 100:6.0f}% {ratio_text:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
