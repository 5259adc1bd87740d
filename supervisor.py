#!/usr/bin/env python3
"""api-worker: receive job messages from a queue and run them in a pool of child processes.

Usage: python supervisor.py [OPTIONS] native -- CMD [ARG...]
       python supervisor.py submit [--wait] FILE
Run with --help for every option.
"""

import sys

from config.cli import main

if __name__ == "__main__":
    sys.exit(main())
