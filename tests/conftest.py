"""Settings for the whole suite.

Hypothesis: no per-example deadline and no "too slow" health check. Both are timing checks, and the
suite must pass while other work loads every core (a 200 ms deadline failed a deny-list property test
under load); speed is measured in ``benchmarks/``, never asserted here.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("passgate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("passgate")
