"""Settings for the whole suite.

Real browsers: ``tests.browser``'s fixtures, registered here once.

Hypothesis: no per-example deadline and no "too slow" health check. Both are timing checks, and the
suite must pass while other work loads every core (a 200 ms deadline failed a deny-list property test
under load); speed is measured in ``benchmarks/``, never asserted here. The default run's example
counts keep it within its time limit; ``HYPOTHESIS_PROFILE=thorough`` searches longer.
"""

import os

from hypothesis import HealthCheck, settings

# One chromium for the whole run, for every page test (the guard page's and the console's): a
# session fixture imported into several modules would start Playwright once per module, and the
# second start fails inside the first one's event loop.
from tests.browser import browser_page, chromium_browser

__all__ = ["browser_page", "chromium_browser"]

settings.register_profile("passgate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# HYPOTHESIS_PROFILE=thorough: the longer search (every property test's ``thorough`` count, see
# ``tests.helpers.examples``, and 300 examples where a test names none).
settings.register_profile("thorough", settings.get_profile("passgate"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "passgate"))
