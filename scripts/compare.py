#!/usr/bin/env python
"""`python scripts/compare.py ARGS` runs `python -m esamp.cli.compare ARGS` (the code and its --help).
Kept because committed commands call it: experiments/{humaneval,math500}_qwen05/README.md."""
import sys

from esamp.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
