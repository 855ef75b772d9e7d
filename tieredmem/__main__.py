"""``python -m tieredmem``: the ``tieredmem`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
