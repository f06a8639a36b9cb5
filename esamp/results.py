"""Crash-safe results: an append-only `samples.jsonl` (one line per sample, written as each prompt
finishes, flushed and fsynced) plus one `results.json` summary per run.

Resume rules (a run restarted on the same folder):
- a partially written last line (the process died mid-write) is cut off;
- a problem with fewer than n complete samples is dropped and regenerated whole, so the final file holds
  exactly one record per (problem, sample);
- the generation settings are fingerprinted in `run.lock.json`; resuming with different settings fails
  instead of silently mixing two experiments in one file.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable


class ResumeMismatch(RuntimeError):
    pass


class SampleStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def repair(self, n: int) -> dict[str, int]:
        """Cut a torn last line and drop incomplete problems. Returns {"kept": records, "dropped": records}."""
        if not self.path.exists():
            return {"kept": 0, "dropped": 0}
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]  # everything up to the last newline
        records, dropped = [], 0
        for line in complete.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a torn line in the middle cannot happen with append+fsync,
                dropped += 1              # but a hand-edited file could have one: skip it, don't crash
        by_problem: dict[str, dict[int, dict]] = defaultdict(dict)
        for r in records:
            by_problem[r["problem_id"]][r["sample_index"]] = r  # a duplicate keeps the last copy
        keep = [r for pid, rs in by_problem.items() if len(rs) >= n for _, r in sorted(rs.items())]
        dropped += len(records) - len(keep)
        if len(complete) != len(raw) or len(keep) != len(records):
            tmp = self.path.with_suffix(".jsonl.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for r in keep:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
        return {"kept": len(keep), "dropped": dropped + (len(raw) > len(complete))}

    def load(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.endswith("\n") and line.strip()]

    def completed_problems(self, n: int) -> set[str]:
        counts: dict[str, set[int]] = defaultdict(set)
        for r in self.load():
            counts[r["problem_id"]].add(r["sample_index"])
        return {pid for pid, s in counts.items() if len(s) >= n}

    def shard(self, rank: int) -> "SampleStore":
        """The private file of process `rank` in a sharded run (`accelerate launch` / `torchrun`)."""
        return SampleStore(self.path.with_name(f"{self.path.stem}.rank{rank}{self.path.suffix}"))

    def merge_shards(self, n: int) -> int:
        """Move the complete problems of every shard file (`samples.rank*.jsonl`, also ones left by a killed
        sharded run) into this file, then delete the shards. Crash-safe: a problem already complete here is
        skipped, so a kill between the append and the delete never duplicates. Returns the records moved."""
        moved = 0
        for shard in sorted(self.path.parent.glob(f"{self.path.stem}.rank*{self.path.suffix}")):
            store = SampleStore(shard)
            store.repair(n)
            done = self.completed_problems(n)
            new = [r for r in store.load() if r["problem_id"] not in done]
            if new:
                self.append(new)
            moved += len(new)
            shard.unlink()
        return moved

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file with `records`, atomically (temp file, fsync, rename): the one exception to
        appending, for a task's regrade at the end of a run (Task.regrade), which keeps each record's
        earlier verdict inside it."""
        tmp = self.path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """All samples of one problem in one write, flushed to disk before returning."""
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


class TelemetryLog:
    """The sampler's telemetry and the generation statistics per part of a run (a run resumed k times has
    k + 1 parts), in `telemetry.jsonl`: one line per save, {"part": i, "final": bool, "telemetry": {...},
    "stats": {...}}; the last line of a part wins. A part killed mid-way keeps its last periodic save (its
    telemetry may include training on prompts that were in flight and are generated again on resume: the
    curves, not the samples, see them twice; its stats count only the prompts it finished, with the time up to
    that save)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.parts, self.stats = self._read()
        self.part = max(self.parts, default=-1) + 1  # this session's part

    def _read(self) -> tuple[dict[int, dict], dict[int, dict]]:
        parts: dict[int, dict] = {}
        stats: dict[int, dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    part = int(entry["part"])
                    parts[part] = entry["telemetry"]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # a torn last line of a killed save
                if isinstance(entry.get("stats"), dict):  # absent in logs written before stats were saved
                    stats[part] = entry["stats"]
                else:
                    stats.pop(part, None)
        return parts, stats

    def save(self, telemetry: dict, final: bool = False, stats: dict | None = None) -> None:
        self.parts[self.part] = telemetry
        from esamp.runtime import resident_memory

        entry = {"part": self.part, "final": final, "telemetry": telemetry, "memory": resident_memory()}
        if stats is not None:
            self.stats[self.part] = entry["stats"] = stats
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def all(self) -> list[dict]:
        return [self.parts[k] for k in sorted(self.parts) if self.parts[k]]

    def earlier_stats(self) -> tuple[list[dict], int]:
        """The generation statistics of the parts before this session's, and how many earlier parts recorded
        none (a log written before stats were saved, or a part killed before its first save)."""
        earlier = [k for k in sorted(self.parts) if k < self.part]
        return [self.stats[k] for k in earlier if k in self.stats], sum(k not in self.stats for k in earlier)


def check_lock(out_dir: Path, fingerprint: dict[str, Any], canonical=None) -> None:
    """First run: write the fingerprint. Resume: it must match (after `canonical`, which renames old option
    values to their current names, applied to both)."""
    lock = out_dir / "run.lock.json"
    if lock.exists():
        old = json.loads(lock.read_text())
        if canonical is not None and old != fingerprint:
            old, fingerprint = canonical(old), canonical(fingerprint)
        if old != fingerprint:
            diff = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
            raise ResumeMismatch(
                f"{out_dir} holds samples generated with different settings ({', '.join(diff)} differ); "
                "use a new output folder or restore the original settings")
    else:
        write_json(lock, fingerprint)


def write_json(path: Path, obj: Any) -> None:
    """Atomic write: a crash never leaves a half-written summary."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)


def environment() -> dict[str, Any]:
    from esamp.runtime import allocator_settings

    """Versions and machine facts recorded next to every result."""
    pkgs = {}
    for name in ("esamp", "torch", "transformers", "tokenizers", "hydra-core", "omegaconf", "numpy",
                 "math-verify", "sympy", "accelerate", "datasets", "gguf", "sentence-transformers", "wandb"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pkgs[name] = None
    import torch

    env = {"python": sys.version.split()[0], "platform": platform.platform(), "packages": pkgs,
           "cuda": torch.version.cuda if torch.cuda.is_available() else None,
           "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor(),
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "allocator": allocator_settings()}
    try:
        root = Path(__file__).resolve().parents[1]
        env["git_commit"] = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                           text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env
