"""passgated: the gate daemon (policy, turnstile state machine, GPIO, journal, display, sync)."""

__version__ = "0.1.0"
