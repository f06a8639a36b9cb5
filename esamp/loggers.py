"""Experiment loggers. `none` writes only the local files; `wandb` mirrors the summary to Weights & Biases,
offline unless the user configured W&B (so it never blocks on a login or needs an account)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class NullLogger:
    def start(self, config: dict[str, Any], out_dir: Path) -> None: ...

    def log_summary(self, summary: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


def wandb_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class WandbLogger(NullLogger):
    def __init__(self, *, project: str, entity: str | None, mode: str | None, tags: list[str] | None):
        # Explicit mode > WANDB_MODE > online only when credentials exist.
        self.mode = mode or os.environ.get("WANDB_MODE") or ("online" if wandb_configured() else "offline")
        self.project, self.entity, self.tags = project, entity, list(tags or [])
        self.run = None

    def start(self, config: dict[str, Any], out_dir: Path) -> None:
        import wandb

        self.run = wandb.init(project=self.project, entity=self.entity, mode=self.mode, config=config,
                              dir=str(out_dir), tags=self.tags, reinit="finish_previous")

    def log_summary(self, summary: dict[str, Any]) -> None:
        import wandb

        # pass_at_k / accuracy / sampler_telemetry are null for ungraded tasks and plain samplers
        curve = summary.get("pass_at_k") or {}
        log: dict[str, Any] = {}
        if curve.get("k"):
            table = wandb.Table(columns=["k", "pass_at_k", "ci_low", "ci_high"],
                                data=[list(r) for r in zip(curve["k"], curve["pass_at_k"], curve["ci_low"],
                                                           curve["ci_high"])])
            log["pass_at_k_table"] = table
            log["pass_at_k_curve"] = wandb.plot.line(table, "k", "pass_at_k", title="Pass@k")
        for k, v in zip(curve.get("k", []), curve.get("pass_at_k", [])):
            log[f"pass@{k}"] = v
        acc = summary.get("accuracy") or {}
        if "accuracy" in acc:
            log["accuracy"] = acc["accuracy"]
        for key in ("tokens_per_second", "tokens_generated", "wall_seconds"):
            if key in (summary.get("timing") or {}):
                log[key] = summary["timing"][key]
        for key, value in (summary.get("task_metrics") or {}).items():
            if isinstance(value, (int, float)):
                log[f"task/{key}"] = value
        sampler = summary.get("sampler_telemetry") or {}
        if sampler.get("loss_curve"):
            loss = wandb.Table(columns=["step", "distiller_loss"],
                               data=[[i, v] for i, v in enumerate(sampler["loss_curve"])])
            log["distiller_loss_curve"] = wandb.plot.line(loss, "step", "distiller_loss", title="Distiller loss")
        for key in ("train_steps", "mean_error_norm", "first_loss", "last_loss"):
            if key in sampler:
                log[f"esamp/{key}"] = sampler[key]
        self.run.log(log)
        self.run.summary.update({k: v for k, v in log.items() if isinstance(v, (int, float))})

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
