"""One run over several processes (`accelerate launch --multi_gpu --num_processes N run.py ...` or
`torchrun --nproc_per_node N run.py ...`; one GPU each on CUDA, gloo on CPU).

The pending problems are split between the processes; each appends to its own `samples.rank{i}.jsonl`; the
main process merges the shards into `samples.jsonl` and alone writes `results.json`. A sample depends only
on (seed, problem, sample index), so N processes give the samples of one (for samplers without state shared
across prompts). A plain single process never imports accelerate nor starts torch.distributed: every method
below is then a no-op.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from esamp.generation import GenerationStats

log = logging.getLogger("esamp")


def world_size() -> int:
    """Processes started by `accelerate launch` / `torchrun` / mpirun (1: a plain `python run.py`)."""
    for var in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(var):
            return int(os.environ[var])
    return 1


class Shards:
    def __init__(self, cfg: DictConfig):
        self.state = None
        if world_size() > 1:
            import torch
            from accelerate import PartialState

            self.state = PartialState(cpu=cfg.model.get("device") == "cpu" or not torch.cuda.is_available())

    @property
    def is_main(self) -> bool:
        return self.state is None or self.state.is_main_process

    @property
    def num_processes(self) -> int:
        return 1 if self.state is None else self.state.num_processes

    def broadcast(self, *objects: Any) -> list[Any]:
        """The main process's values, on every process."""
        if self.state is None:
            return list(objects)
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list(list(objects))

    def folder(self, out: Path) -> Path:
        """Every process writes into the main process's folder (Hydra's timestamped folders may differ)."""
        main_out = Path(self.broadcast(str(out))[0])
        if main_out.resolve() != out.resolve():
            log.warning("process %d uses the main process's folder %s, not %s: pass hydra.run.dir=... when "
                        "launching several processes", self.state.process_index, main_out, out)
        return main_out

    def split(self, todo: list, store):
        """This process's contiguous slice of the pending problems, and its own shard file."""
        if self.state is None:
            return todo, store
        with self.state.split_between_processes(todo) as mine:
            log.info("process %d of %d: %d of %d pending problems", self.state.process_index,
                     self.state.num_processes, len(mine), len(todo))
            return list(mine), store.shard(self.state.process_index)

    def model_cfg(self, cfg: DictConfig) -> DictConfig:
        """One GPU per process."""
        if self.state is not None and self.state.device.type != "cpu" and cfg.model.get("device", "cpu") != "cpu":
            return OmegaConf.merge(cfg.model, {"device": str(self.state.device)})
        return cfg.model

    def gather(self, stats: GenerationStats, telemetry: list) -> tuple[GenerationStats, list]:
        """All processes' stats and telemetry (collective). Processes decode in parallel, so generation time
        is the slowest process's and tokens/s is the total throughput."""
        if self.state is None:
            return stats, telemetry
        from accelerate.utils import gather_object

        parts = gather_object([(vars(stats), telemetry)])
        total = GenerationStats.merged([GenerationStats(**part) for part, _ in parts], parallel=True)
        return total, [t for _, tel in parts for t in tel]

    def close(self) -> None:
        """Wait for every process, then tear the process group down. Left to interpreter exit, gloo's threads
        can be destroyed while still joinable and abort the process ("terminate called without an active
        exception", exit -6) after its work is done, which fails the whole launch."""
        if self.state is not None:
            self.state.wait_for_everyone()
            self.state.destroy_process_group()
