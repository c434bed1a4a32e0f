#!/usr/bin/env python3
"""mlsan-live: `python run_live.py --camera 0` (see --help)."""

import sys

from realtime.cli import main

if __name__ == "__main__":
    sys.exit(main())
