"""``connect`` with a TLS offer of its own: checks of a target's TLS (PS3.15 B.10, B.12).

Theory of operation
-------------------
``connect: {tls: true}`` uses the run's client context (the profile's TLS
settings).  ``tls`` may instead be a mapping that changes the offer:
``version`` (one TLS version only), ``ciphers`` (TLS 1.2 suites as an
OpenSSL cipher string, or a list of them), ``client_cert: false`` (offer no
client certificate) and ``verify: true`` (this connection must verify the
target's certificate: in a run that does not verify, ``--tls-insecure`` or
``tls.insecure``, the step is inconclusive, never passed unverified).
:func:`context_for` builds that context from the run's with
:func:`dicomconf.scu.tls.variant`.

``refused: true`` turns the step into a check that the target refuses the
handshake (:func:`expect_refused`): a TCP connection opens, the handshake is
tried with the offer (verification off: a certificate problem is no
refusal) and closed.  The target passes when it answers with a TLS alert or
closes (in TLS 1.3, within a second after the handshake: that is when a
server rejects a missing client certificate); it fails when the handshake
completes, with the version and suite it chose.  What says nothing about
the target is *inconclusive*: no TCP connection, no answer within
``within``, or an offer this machine's OpenSSL cannot make (TLS 1.0
compiled out; export suites, gone since OpenSSL 1.1.0).  What was offered,
and what of the asked offer this OpenSSL lacks, is appended to the step's
line in the report.  No connection is named or kept.
"""

from __future__ import annotations

import ssl
from typing import Any

from dicomconf.scenario.engine import Inconclusive, ScenarioFailure, Target
from dicomconf.scenario.model import Step
from dicomconf.scu.target import format_hostport


def context_for(step: Step, target: Target, spec: dict, *, refused: bool = False) -> tuple[ssl.SSLContext, Any]:
    """The client context and :class:`~dicomconf.scu.tls.Offer` for ``connect``'s ``tls`` mapping."""
    from dicomconf.scu.tls import ProbeUnavailable, variant, verifies

    if spec.get("verify") and not verifies(target.tls_context):
        raise Inconclusive(step, "this run does not verify the target's certificate (--tls-insecure or "
                                 "tls.insecure): whether it is valid for the target's name cannot be said")
    try:
        return variant(
            target.tls_context,
            version=spec.get("version"),
            ciphers=spec.get("ciphers"),
            client_cert=bool(spec.get("client_cert", True)),
            verify=not refused,
        )
    except ProbeUnavailable as exc:
        raise Inconclusive(step, f"the offer cannot be made from here: {exc}") from None
    except ValueError as exc:
        raise step.error(str(exc), "tls") from None


def expect_refused(runner: Any, step: Step, spec: Any, within: float) -> None:
    """Pass when the target refuses a handshake with the offer ``spec`` (see the module docstring)."""
    from dicomconf.scu.tls import ProbeUnavailable, try_handshake

    target: Target = runner.target
    if spec is None or spec is False:  # the loader refuses this already (model.py); a direct call may not
        raise step.error("refused: true checks a TLS handshake: give tls: true or a TLS offer", "refused")
    if target.tls_port is None or target.tls_context is None:
        raise ScenarioFailure(step, "the scenario needs TLS but the target has no TLS port in its profile")
    ctx, offer = context_for(step, target, spec if isinstance(spec, dict) else {}, refused=True)
    where = format_hostport(target.host, target.tls_port)
    try:
        result = try_handshake(target.host, target.tls_port, ctx, server_name=target.server_name, timeout=within)
    except ProbeUnavailable as exc:
        raise Inconclusive(step, f"the offer ({offer.describe()}) was not sent: {exc}") from None
    except TimeoutError:
        raise Inconclusive(step, f"{where} neither completed nor refused the TLS handshake ({offer.describe()}) "
                                 f"within {within:g}s") from None
    except OSError as exc:
        raise Inconclusive(step, f"no TCP connection to {where} ({exc}): whether it refuses the handshake "
                                 "cannot be seen") from None
    if result.completed:
        raise ScenarioFailure(
            step,
            f"the target completed a TLS handshake it should refuse: {result.version}, {result.cipher}",
            expected=f"the handshake refused (a TLS alert or a close); offered: {offer.describe()}",
            came=result.describe(),
        )
    annotate(runner, step, f"offered {offer.describe()}; {result.describe()}")


def annotate(runner: Any, step: Step, text: str) -> None:
    """Append ``text`` to the report's line for ``step`` (its latest trace entry)."""
    with runner._lock:
        for entry in reversed(runner.trace):
            if entry["line"] == step.line and entry["kind"] == step.kind:
                entry["what"] = f"{entry['what']} -> {text}"[:700]
                return


__all__ = ["annotate", "context_for", "expect_refused"]
