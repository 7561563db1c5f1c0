"""Optional system parts in tests.

``require_part`` is the one way a test depends on an optional system part (libzbar0, chromium,
PostgreSQL): locally a missing part skips the test, but under ``CI=true`` it fails, so CI can
never go green by skipping.
"""

from __future__ import annotations

import os

import pytest

UNDER_CI = os.environ.get("CI", "").lower() == "true"


def require_part(available: bool, part: str, hint: str = "") -> None:
    """Skip (locally) or fail (under CI=true) when an optional system part is missing."""
    if available:
        return
    message = f"{part} is not available{': ' + hint if hint else ''}"
    if UNDER_CI:
        pytest.fail(f"{message} (required when CI=true)", pytrace=False)
    pytest.skip(message)
