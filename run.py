"""Entry point: python run.py [sampler=esamp] [task=math500] [key=value ...]  (Hydra; -m for sweeps)."""
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import hydra
from omegaconf import DictConfig
from hydra.core.hydra_config import HydraConfig

from esamp.pipeline import ConfigError, run
from esamp.results import ResumeMismatch


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = run(cfg, out_dir=HydraConfig.get().runtime.output_dir)
    except (ConfigError, ResumeMismatch) as err:
        logging.getLogger("esamp").error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    curve = summary.get("pass_at_k") or {}
    return curve["pass_at_k"][-1] if curve.get("pass_at_k") else None  # the sweeper's objective


if __name__ == "__main__":
    main()
