"""What the gate writes into its journal: the kinds of event, defined once in the gate↔hub
contract (``passgate.wire``) and re-exported here for the gate's modules."""

from passgate.wire import EventKind

__all__ = ["EventKind"]
