#!/usr/bin/env python
"""`python scripts/frontier.py ARGS` runs `python -m esamp.cli.frontier ARGS` (the code and its --help).
Kept because committed commands call it: experiments/writing_frontier/README.md."""
import sys

from esamp.cli.frontier import main

if __name__ == "__main__":
    sys.exit(main())
