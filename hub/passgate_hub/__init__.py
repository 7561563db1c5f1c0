"""passgate_hub: the operator's back office for passgate gates.

Holds venues, zones, gates, issuer keys, passes, deny lists and the events gates upload; serves
each gate its bundle (trusted keys, deny-list deltas, config) and the other gates' redemptions.
Talks to gates only over HTTP; never imports the firmware.
"""

__version__ = "0.1.0"
