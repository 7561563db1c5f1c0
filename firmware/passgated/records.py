"""What the gate writes into its journal: the kinds of event, one enum so no kind is spelled twice.

Pure (no I/O): the state machine names the records it wants, the journal writes them, the sync
client sends them to the hub, which counts passages by these same kinds.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    DECISION = "decision"  # every scan's answer, admit or refuse
    REDEEMED = "redeemed"  # a reservation the holder walked through with
    RELEASED = "released"  # a reservation given back (nobody passed)
    RESERVATION_ASSUMED = "reservation_assumed"  # left by a crash: counted as used
    PASSAGE = "passage"
    NOT_PASSED = "not_passed"
    FORCED_PASSAGE = "forced_passage"
    TAMPER = "tamper"
    TAMPER_CLEARED = "tamper_cleared"
    STATE = "state"
    EMERGENCY_RESET = "emergency_reset"
    FAULT_CLEARED = "fault_cleared"  # the journal records again after a fault (with its cause)
    JOURNAL_SET_ASIDE = "journal_set_aside"  # a damaged journal was moved aside at start
    HISTORY_RESTORED = "history_restored"  # redemptions are back (from the hub or a recovery)
