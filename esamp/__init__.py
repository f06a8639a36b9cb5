"""esamp: Exploratory Sampling (ESamp) and the evaluation harness around it."""

__version__ = "0.1.0"


def _safe_dirname(s: str, limit: int = 150) -> str:
    """Hydra sweep job folder names: no path separators or odd characters, bounded length (hash suffix)."""
    import hashlib
    import re

    safe = re.sub(r"[^\w.,=+@%-]", "-", str(s))
    if len(safe.encode()) > limit:
        safe = safe[: limit - 9] + "~" + hashlib.blake2b(str(s).encode(), digest_size=4).hexdigest()
    return safe


def _register_resolvers() -> None:
    try:
        from omegaconf import OmegaConf
    except ImportError:  # the package imports without its config stack (e.g. a minimal grading worker)
        return
    OmegaConf.register_new_resolver("esamp.dirname", _safe_dirname, replace=True)


_register_resolvers()
