#!/usr/bin/env python3
"""api-worker: receive job messages from a queue and run them in a pool of child processes.

Usage: python supervisor.py [OPTIONS] native -- CMD [ARG...]
       python supervisor.py [OPTIONS] docker
       python supervisor.py status | submit [--wait] FILE
Run with --help for every option.
"""

import sys

if __name__ == "__main__":
    # Imported here, not above: pool children start by importing this file (as __mp_main__),
    # and must not pay for the whole command line, metrics and HTTP server included.
    from assembly.main import main

    sys.exit(main())
