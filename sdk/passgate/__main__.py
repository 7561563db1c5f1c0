"""``python -m passgate``: the same as the ``passgate`` command."""

import sys

from .cli import main

sys.exit(main())
