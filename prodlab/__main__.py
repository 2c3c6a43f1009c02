"""``python -m prodlab``: the command line (:mod:`prodlab.cli`)."""

from __future__ import annotations

import os
import sys

# Threads that wait for work sleep instead of spinning: on a shared 2-core machine a spinning OpenMP thread
# that competes with another process for a core makes training several times slower. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from prodlab.cli import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
