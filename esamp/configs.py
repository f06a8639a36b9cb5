"""The yaml files under conf/ are the only home of default values. Code that builds a sampler or a task outside
`run.py` (tests, benchmarks, notebooks) composes the same yaml through Hydra and overrides what it needs:

    sampler = from_yaml("sampler", "esamp", n=4, beta=0.5, distiller={"lr": 0})   # distiller: the whole node
    task = from_yaml("task", "math500", limit=2)

Constructors take every knob as a required keyword, so a knob missing from its yaml fails at once instead of
falling back to a second, silently different default.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

from esamp import checks

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@lru_cache(maxsize=None)
def _composed(group: str, option: str) -> dict:
    """conf/<group>/<option>.yaml as Hydra composes it inside the full config (its defaults list, e.g. the
    contrastive sampler's amateur model, included), as a plain dict."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if not (CONF_DIR / group / f"{option}.yaml").is_file():
        raise checks.invalid(group, option, ", ".join(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"{group}={option}"])
    return OmegaConf.to_container(cfg[group], resolve=True)


def option(group: str, option: str, **overrides: Any) -> dict:
    """The composed option with `overrides` in place of its top-level keys (a dict replaces the whole node, as
    an amateur model's config must). An override of a key the yaml does not have is an error: a typo must not
    pass as a knob."""
    cfg = copy.deepcopy(_composed(group, option))
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise KeyError(f"{group}.{unknown[0]} is not a key of conf/{group}/{option}.yaml (keys: "
                       f"{', '.join(k for k in cfg if k != '_target_')})")
    cfg.update(overrides)
    return cfg


def from_yaml(group: str, option_name: str, as_class: type | None = None, **overrides: Any) -> Any:
    """Instantiate conf/<group>/<option_name>.yaml's `_target_` (or `as_class`, e.g. a test's subclass of it)
    with `overrides` (values may be live objects, e.g. a loaded amateur model)."""
    from hydra.utils import get_class

    cfg = option(group, option_name, **overrides)
    target = get_class(cfg.pop("_target_"))
    if as_class is not None and not issubclass(as_class, target):
        raise TypeError(f"{as_class.__name__} is not a subclass of {target.__name__} ({group}={option_name})")
    return (as_class or target)(**cfg)
