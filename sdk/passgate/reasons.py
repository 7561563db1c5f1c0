"""Reason codes: the one list shared by the SDK, the gate's policy, its journal, display and the hub.

Codes are stable strings (they are stored in journals and sent to the hub); the human text is the
default explanation a guard reads, and callers may give a more specific one ("Valid from 18:00").
"""

from enum import StrEnum


class Reason(StrEnum):
    """Why a pass was refused (or ``ADMIT`` when it was not)."""

    ADMIT = "admit"
    UNREADABLE = "unreadable"
    UNKNOWN_KEY = "unknown_key"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    BAD_SIGNATURE = "bad_signature"
    KEY_RETIRED = "key_retired"
    REVOKED = "revoked"
    BLOCKED = "blocked"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_ZONE = "wrong_zone"
    USED_UP = "used_up"
    ALREADY_INSIDE = "already_inside"
    DENY_LIST_STALE = "deny_list_stale"
    BUSY = "busy"
    EMERGENCY = "emergency"
    OUT_OF_SERVICE = "out_of_service"

    @property
    def text(self) -> str:
        """Short default explanation for the guard's display."""
        return _TEXT[self]


_TEXT: dict[Reason, str] = {
    Reason.ADMIT: "Admitted",
    Reason.UNREADABLE: "Not a readable pass",
    Reason.UNKNOWN_KEY: "Issuer not trusted here",
    Reason.UNSUPPORTED_ALGORITHM: "Signature algorithm not accepted",
    Reason.BAD_SIGNATURE: "Forged or damaged pass",
    Reason.KEY_RETIRED: "Issued with a retired key",
    Reason.REVOKED: "Pass revoked",
    Reason.BLOCKED: "Pass blocked",
    Reason.NOT_YET_VALID: "Not valid yet",
    Reason.EXPIRED: "Pass expired",
    Reason.WRONG_ZONE: "Not valid for this gate",
    Reason.USED_UP: "All entries used",
    Reason.ALREADY_INSIDE: "Already inside",
    Reason.DENY_LIST_STALE: "Deny list out of date",
    Reason.BUSY: "Wait: gate busy",
    Reason.EMERGENCY: "Emergency: free passage",
    Reason.OUT_OF_SERVICE: "Gate out of service",
}
