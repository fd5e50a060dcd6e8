"""Numbers the standard assigns, each defined once (PS3.8 9.3, PS3.7 D.3.3).

Every other module imports these names; no module repeats a PDU type, item
type, result or reason code as a bare literal.
"""

from __future__ import annotations

# PS3.8 9.3.1: PDU types.
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_NAMES: dict[int, str] = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ",
    A_RELEASE_RP: "A-RELEASE-RP",
    A_ABORT: "A-ABORT",
}
PDU_TYPES: dict[str, int] = {name: code for code, name in PDU_NAMES.items()}

# Every PDU starts with type (1), reserved (1), length (4).
PDU_HEADER_LENGTH = 6

# PS3.8 9.3.2 / 9.3.3: items of the A-ASSOCIATE-RQ/AC variable field.
ITEM_APPLICATION_CONTEXT = 0x10
ITEM_PRESENTATION_CONTEXT_RQ = 0x20
ITEM_PRESENTATION_CONTEXT_AC = 0x21
ITEM_ABSTRACT_SYNTAX = 0x30
ITEM_TRANSFER_SYNTAX = 0x40
ITEM_USER_INFORMATION = 0x50

# PS3.8 D.1, PS3.7 D.3.3: user information sub-items.
SUB_MAXIMUM_LENGTH = 0x51
SUB_IMPLEMENTATION_CLASS_UID = 0x52
SUB_ASYNCHRONOUS_OPERATIONS_WINDOW = 0x53
SUB_ROLE_SELECTION = 0x54
SUB_IMPLEMENTATION_VERSION_NAME = 0x55
SUB_SOP_CLASS_EXTENDED_NEGOTIATION = 0x56
SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION = 0x57
SUB_USER_IDENTITY_RQ = 0x58
SUB_USER_IDENTITY_AC = 0x59

ITEM_NAMES: dict[int, str] = {
    ITEM_APPLICATION_CONTEXT: "Application Context",
    ITEM_PRESENTATION_CONTEXT_RQ: "Presentation Context (RQ)",
    ITEM_PRESENTATION_CONTEXT_AC: "Presentation Context (AC)",
    ITEM_ABSTRACT_SYNTAX: "Abstract Syntax",
    ITEM_TRANSFER_SYNTAX: "Transfer Syntax",
    ITEM_USER_INFORMATION: "User Information",
    SUB_MAXIMUM_LENGTH: "Maximum Length",
    SUB_IMPLEMENTATION_CLASS_UID: "Implementation Class UID",
    SUB_ASYNCHRONOUS_OPERATIONS_WINDOW: "Asynchronous Operations Window",
    SUB_ROLE_SELECTION: "SCP/SCU Role Selection",
    SUB_IMPLEMENTATION_VERSION_NAME: "Implementation Version Name",
    SUB_SOP_CLASS_EXTENDED_NEGOTIATION: "SOP Class Extended Negotiation",
    SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: "SOP Class Common Extended Negotiation",
    SUB_USER_IDENTITY_RQ: "User Identity (RQ)",
    SUB_USER_IDENTITY_AC: "User Identity (AC)",
}

# PS3.8 7.1.1.2 / Annex A.2: the one application context name DICOM defines.
APPLICATION_CONTEXT_NAME = "1.2.840.10008.3.1.1.1"

# PS3.8 9.3.2: protocol version 1 is bit 0.
PROTOCOL_VERSION = 0x0001

# PS3.8 9.3.3.2 Table 9-18: presentation context results.
PC_ACCEPTANCE = 0
PC_USER_REJECTION = 1
PC_NO_REASON = 2
PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4
PC_RESULT_NAMES: dict[int, str] = {
    PC_ACCEPTANCE: "acceptance",
    PC_USER_REJECTION: "user-rejection",
    PC_NO_REASON: "no-reason (provider rejection)",
    PC_ABSTRACT_SYNTAX_NOT_SUPPORTED: "abstract-syntax-not-supported (provider rejection)",
    PC_TRANSFER_SYNTAXES_NOT_SUPPORTED: "transfer-syntaxes-not-supported (provider rejection)",
}

# PS3.8 9.3.4 Table 9-21: A-ASSOCIATE-RJ result, source, reason.
RJ_RESULT_PERMANENT = 1
RJ_RESULT_TRANSIENT = 2
RJ_RESULT_NAMES: dict[int, str] = {
    RJ_RESULT_PERMANENT: "rejected-permanent",
    RJ_RESULT_TRANSIENT: "rejected-transient",
}
RJ_SOURCE_USER = 1
RJ_SOURCE_ACSE = 2
RJ_SOURCE_PRESENTATION = 3
RJ_SOURCE_NAMES: dict[int, str] = {
    RJ_SOURCE_USER: "DICOM UL service-user",
    RJ_SOURCE_ACSE: "DICOM UL service-provider (ACSE related function)",
    RJ_SOURCE_PRESENTATION: "DICOM UL service-provider (Presentation related function)",
}
# Reasons, keyed by (source, reason).
RJ_USER_NO_REASON = 1
RJ_USER_APPLICATION_CONTEXT_NOT_SUPPORTED = 2
RJ_USER_CALLING_AE_NOT_RECOGNIZED = 3
RJ_USER_CALLED_AE_NOT_RECOGNIZED = 7
RJ_ACSE_NO_REASON = 1
RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED = 2
RJ_PRESENTATION_TEMPORARY_CONGESTION = 1
RJ_PRESENTATION_LOCAL_LIMIT_EXCEEDED = 2
RJ_REASON_NAMES: dict[tuple[int, int], str] = {
    (RJ_SOURCE_USER, RJ_USER_NO_REASON): "no-reason-given",
    (RJ_SOURCE_USER, RJ_USER_APPLICATION_CONTEXT_NOT_SUPPORTED): "application-context-name-not-supported",
    (RJ_SOURCE_USER, RJ_USER_CALLING_AE_NOT_RECOGNIZED): "calling-AE-title-not-recognized",
    (RJ_SOURCE_USER, RJ_USER_CALLED_AE_NOT_RECOGNIZED): "called-AE-title-not-recognized",
    (RJ_SOURCE_ACSE, RJ_ACSE_NO_REASON): "no-reason-given",
    (RJ_SOURCE_ACSE, RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED): "protocol-version-not-supported",
    (RJ_SOURCE_PRESENTATION, RJ_PRESENTATION_TEMPORARY_CONGESTION): "temporary-congestion",
    (RJ_SOURCE_PRESENTATION, RJ_PRESENTATION_LOCAL_LIMIT_EXCEEDED): "local-limit-exceeded",
}
# Reason values defined (not reserved) for each RJ source (Table 9-21).
RJ_REASONS_BY_SOURCE: dict[int, frozenset[int]] = {
    source: frozenset(r for (s, r) in RJ_REASON_NAMES if s == source)
    for source in RJ_SOURCE_NAMES
}

# PS3.8 9.3.8 Table 9-26: A-ABORT source and reason.
ABORT_SOURCE_USER = 0
ABORT_SOURCE_RESERVED = 1
ABORT_SOURCE_PROVIDER = 2
ABORT_SOURCE_NAMES: dict[int, str] = {
    ABORT_SOURCE_USER: "DICOM UL service-user (initiated abort)",
    ABORT_SOURCE_RESERVED: "reserved",
    ABORT_SOURCE_PROVIDER: "DICOM UL service-provider (initiated abort)",
}
ABORT_REASON_NOT_SPECIFIED = 0
ABORT_REASON_UNRECOGNIZED_PDU = 1
ABORT_REASON_UNEXPECTED_PDU = 2
ABORT_REASON_UNRECOGNIZED_PARAMETER = 4
ABORT_REASON_UNEXPECTED_PARAMETER = 5
ABORT_REASON_INVALID_PARAMETER_VALUE = 6
ABORT_REASON_NAMES: dict[int, str] = {
    ABORT_REASON_NOT_SPECIFIED: "reason-not-specified",
    ABORT_REASON_UNRECOGNIZED_PDU: "unrecognized-PDU",
    ABORT_REASON_UNEXPECTED_PDU: "unexpected-PDU",
    ABORT_REASON_UNRECOGNIZED_PARAMETER: "unrecognized-PDU parameter",
    ABORT_REASON_UNEXPECTED_PARAMETER: "unexpected-PDU parameter",
    ABORT_REASON_INVALID_PARAMETER_VALUE: "invalid-PDU-parameter value",
}

# PS3.8 Annex E.2: message control header bits.
MCH_COMMAND = 0x01
MCH_LAST = 0x02

# PS3.7 D.3.3.5: user identity types.
USER_IDENTITY_TYPES: dict[int, str] = {
    1: "Username",
    2: "Username and Passcode",
    3: "Kerberos Service ticket",
    4: "SAML Assertion",
    5: "JSON Web Token (JWT)",
}

# PS3.8 9.3.1: presentation context IDs are odd, 1..255; at most 128 contexts.
MAX_PRESENTATION_CONTEXTS = 128

# Transfer syntax every DICOM implementation supports (PS3.5 10.1).
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

# The AE title field is 16 bytes (PS3.8 9.3.2).
AE_TITLE_LENGTH = 16

# dicomconf's own implementation identity (PS3.7 D.3.3.2): a UUID-derived UID (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.76824279783997564889253192467361373446"
IMPLEMENTATION_VERSION_NAME = "DICOMCONF_010"

# PS3.7 D.3.3.7.1: the user identity types whose primary field is a UTF-8 username.
USER_IDENTITY_USERNAME = 1
USER_IDENTITY_USERNAME_PASSCODE = 2
