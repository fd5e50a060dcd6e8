"""What the reference SCP's ``-v`` trace says about a PDU, with secrets masked (PS3.8 9.3, PS3.7 D.3.3.7).

Theory of operation
-------------------
:func:`describe` turns a PDU object of the core (or a DIMSE message) into one
line for the PDU trace: type, AE titles and contexts of an A-ASSOCIATE, the
PDVs of a P-DATA-TF.  A User Identity sub-item (PS3.7 D.3.3.7.1) is shown by
type and user name only: its passcode (type 2) and its token (Kerberos
ticket, SAML assertion, JWT: types 3-5, whose primary field is itself the
credential) print as ``***`` with their length, unless ``show_secrets`` is
given (``dicomconf scp --show-secrets``).  The server response of an
A-ASSOCIATE-AC's User Identity sub-item (a ticket or token for types 3-5,
D.3.3.7.2) is treated the same way.  Logs must not become a store of
credentials: a trace is often pasted into a ticket.
"""

from __future__ import annotations

from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul import dimse

MASK = "***"
_TOKEN_NAMES = {3: "Kerberos ticket", 4: "SAML assertion", 5: "JWT"}


def _text(value: bytes, limit: int = 64) -> str:
    text = bytes(value).decode("utf-8", "replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def secret(value: bytes, show: bool) -> str:
    """A secret field as the trace prints it: ``***`` with its length, or the value when asked."""
    return _text(value) if show else f"{MASK} ({len(value)} bytes)"


def user_identity(item: Any, show_secrets: bool = False) -> str:
    """One User Identity Negotiation sub-item (58H, PS3.7 D.3.3.7.1), its secrets masked."""
    kind = item.user_identity_type
    out = f"user identity type {kind}"
    if kind in (C.USER_IDENTITY_USERNAME, C.USER_IDENTITY_USERNAME_PASSCODE):
        out += f" user={_text(item.primary_field)}"
        if kind == C.USER_IDENTITY_USERNAME_PASSCODE or item.secondary_field:
            out += f" passcode: {secret(item.secondary_field, show_secrets)}"
    else:
        out += f" {_TOKEN_NAMES.get(kind, 'primary field')}: {secret(item.primary_field, show_secrets)}"
        if item.secondary_field:
            out += f" secondary field: {secret(item.secondary_field, show_secrets)}"
    if item.positive_response_requested:
        out += " (positive response requested)"
    return out


def describe(obj: Any, show_secrets: bool = False) -> str:
    """One trace line for a PDU object or a DIMSE message."""
    if isinstance(obj, dimse.Message):
        return f"P-DATA ({obj.name}, context {obj.context_id})"
    pdu_type = getattr(obj, "pdu_type", None)
    name = C.PDU_NAMES.get(pdu_type, type(obj).__name__) if pdu_type is not None else type(obj).__name__
    if pdu_type == C.P_DATA_TF:
        return f"{name} ({len(obj.pdvs)} PDV(s), {sum(len(p.data) for p in obj.pdvs)} byte(s))"
    if pdu_type == C.A_ASSOCIATE_RQ:
        out = (
            f"{name} calling={obj.calling_ae_title!r} called={obj.called_ae_title!r} "
            f"contexts={len(obj.presentation_contexts)}"
        )
        identity = obj.user_information.user_identity
        return out if identity is None else f"{out} {user_identity(identity, show_secrets)}"
    if pdu_type == C.A_ASSOCIATE_AC:
        results = " ".join(
            f"{pc.context_id}:{C.PC_RESULT_NAMES.get(pc.result, pc.result)}" for pc in obj.presentation_contexts
        )
        out = f"{name} max={obj.user_information.maximum_length} contexts {results}"
        response = obj.user_information.user_identity_response
        if response is not None:
            out += f" user identity response: {secret(response.server_response, show_secrets)}"
        return out
    return f"{name} {obj!r}"
