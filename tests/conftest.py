"""Settings for the whole suite.

Real browsers: ``tests.browser``'s fixtures, registered here once.

Hypothesis: no per-example deadline and no "too slow" health check. Both are timing checks, and the
suite must pass while other work loads every core (a 200 ms deadline failed a deny-list property test
under load); speed is measured in ``benchmarks/``, never asserted here.
"""

from hypothesis import HealthCheck, settings

# One chromium for the whole run, for every page test (the guard page's and the console's): a
# session fixture imported into several modules would start Playwright once per module, and the
# second start fails inside the first one's event loop.
from tests.browser import browser_page, chromium_browser

__all__ = ["browser_page", "chromium_browser"]

settings.register_profile("passgate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("passgate")
