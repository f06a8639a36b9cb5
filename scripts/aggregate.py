#!/usr/bin/env python
"""`python scripts/aggregate.py ARGS` runs `python -m esamp.cli.aggregate ARGS` (the code and its --help).
Kept because committed commands call it: conf/experiment/beta_sweep.yaml, conf/experiment/sampler_comparison.yaml."""
import sys

from esamp.cli.aggregate import main

if __name__ == "__main__":
    sys.exit(main())
