"""Reason codes: the one list shared by the SDK, the gate's policy, its journal, display and the hub.

Codes are stable strings (they are stored in journals and sent to the hub). The text is what a guard
reads beside the gate: plain words and, for a refusal, what to do next. Technical details (why a code
was unreadable, which check failed) never go in it: a decision carries them separately, for the
journal and the small detail line.
"""

from enum import StrEnum


class Reason(StrEnum):
    """Why a pass was refused (or ``ADMIT`` when it was not)."""

    ADMIT = "admit"
    UNREADABLE = "unreadable"
    INCOMPLETE_READ = "incomplete_read"
    CARD_NOT_ACCEPTED = "card_not_accepted"
    UNKNOWN_KEY = "unknown_key"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    BAD_SIGNATURE = "bad_signature"
    HOLDER_PROOF_REQUIRED = "holder_proof_required"
    PRESENTATION_EXPIRED = "presentation_expired"
    PRESENTATION_REPLAYED = "presentation_replayed"
    KEY_RETIRED = "key_retired"
    KEY_REVOKED = "key_revoked"
    REVOKED = "revoked"
    BLOCKED = "blocked"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    WRONG_ZONE = "wrong_zone"
    RULES = "rules"
    USED_UP = "used_up"
    ALREADY_INSIDE = "already_inside"
    DENY_LIST_STALE = "deny_list_stale"
    BUSY = "busy"
    EMERGENCY = "emergency"
    OUT_OF_SERVICE = "out_of_service"
    GATE_FAULT = "gate_fault"

    @property
    def text(self) -> str:
        """Short default explanation for the guard's display."""
        return _TEXT[self]


_TEXT: dict[Reason, str] = {
    Reason.ADMIT: "Admitted",
    Reason.UNREADABLE: "Not a valid pass: ask for another copy",
    Reason.INCOMPLETE_READ: "Code not read completely: scan again",
    Reason.CARD_NOT_ACCEPTED: "Cards are not accepted here: show the pass's QR code",
    Reason.UNKNOWN_KEY: "Pass from an issuer not accepted here: send to the box office",
    Reason.UNSUPPORTED_ALGORITHM: "Pass format not accepted here: send to the box office",
    Reason.BAD_SIGNATURE: "Forged or damaged pass: ask for another copy",
    Reason.HOLDER_PROOF_REQUIRED: "Show the live code from the wallet, not a printed pass",
    Reason.PRESENTATION_EXPIRED: "Code expired: show the live code (screenshots do not work)",
    Reason.PRESENTATION_REPLAYED: "Code already used: wait for the next code",
    Reason.KEY_RETIRED: "Pass issued with an old key: send to the box office",
    Reason.KEY_REVOKED: "Pass signed with a withdrawn key: send to the box office",
    Reason.REVOKED: "Pass cancelled: send to the box office",
    Reason.BLOCKED: "Pass blocked: send to the box office",
    Reason.NOT_YET_VALID: "Not valid yet",
    Reason.EXPIRED: "Pass expired",
    Reason.WRONG_ZONE: "Not valid for this entrance",
    Reason.RULES: "Entry rules do not admit this ticket now: send to the box office",
    Reason.USED_UP: "Pass already used",
    Reason.ALREADY_INSIDE: "Already inside: no re-entry yet",
    Reason.DENY_LIST_STALE: "Gate lists out of date: call a supervisor",
    Reason.BUSY: "Wait: gate busy",
    Reason.EMERGENCY: "Emergency: free passage",
    Reason.OUT_OF_SERVICE: "Gate out of service: please use another gate",
    Reason.GATE_FAULT: "Gate fault: please use another gate",
}
