#!/usr/bin/env python
"""`python scripts/select_problems.py ARGS` runs `python -m esamp.cli.select_problems ARGS` (the code and its --help).
Kept because committed commands call it: experiments/math500_qwen05/README.md."""
import sys

from esamp.cli.select_problems import main

if __name__ == "__main__":
    sys.exit(main())
