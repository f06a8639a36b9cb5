"""The README's sampler table names every sampler config with the paper that defines it."""
import re

from tests.conftest import ROOT


def test_readme_sampler_table_lists_every_sampler_with_its_paper():
    readme = (ROOT / "README.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| [^|]+ \| ([^|]+) \|$", readme, re.M)}
    samplers = sorted(p.stem for p in (ROOT / "conf" / "sampler").glob("*.yaml"))
    assert len(samplers) >= 10
    missing = [s for s in samplers if s not in rows]
    assert not missing, f"README sampler table lacks {missing}"
    for name in samplers:  # a year or an arXiv id in every cell, except greedy's (no single paper)
        assert name == "greedy" or re.search(r"(19|20)\d\d|arXiv \d{4}\.\d{4,5}", rows[name]), (name, rows[name])
