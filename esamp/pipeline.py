"""run(cfg): config -> task + sampler + model -> generation -> grading -> metrics -> results files."""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from esamp import checks
from esamp.checks import ConfigError
from esamp.engines import EngineError, make_engine
from esamp.generation import GenerationStats, RowResult
from esamp.loggers import NullLogger
from esamp.metrics.passk import default_ks, mean_accuracy, passk_curve
from esamp.report import failure_counts, format_summary
from esamp.results import ResumeMismatch, SampleStore, TelemetryLog, check_lock, environment, write_json
from esamp.sharding import Shards
from esamp.tasks.base import Problem
from esamp.tasks.data import DataNotFound

log = logging.getLogger("esamp")


def build(cfg: DictConfig, key: str):
    """Instantiate a config group, surfacing the constructor's own one-line ValueError."""
    try:
        return instantiate(cfg[key], _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(str(cause)) from cause


def validate(cfg: DictConfig, sampler, task=None) -> list[int]:
    """Checks that need more than one group. Returns the k values of the Pass@k curve."""
    n = sampler.n
    gen = cfg.generation
    checks.integer("generation.batch_prompts", gen.batch_prompts)
    least = sampler.min_new_tokens
    max_new_tokens = task.max_new_tokens if task is not None else cfg.task.max_new_tokens
    checks.integer("task.max_new_tokens", max_new_tokens, minimum=least)  # the sampler's least (e.g. ESamp: 2)
    if sampler.handles_eos and task is not None and task.stop_strings:
        raise ConfigError(f"sampler={sampler.name} with task={cfg.task.name}: the task ends completions at stop "
                          "strings, which beam search does not support (it decides where its rows end)")
    ks = list(cfg.metrics.ks) if cfg.metrics.get("ks") else default_ks(n)
    bad = [k for k in ks if not isinstance(k, int) or not 1 <= k <= n]
    if bad:
        raise ConfigError(f"metrics.ks={ks} is invalid: allowed values are integers k with 1 <= k <= n "
                          f"(sampler.n={n})")
    return ks


def make_records(problem: Problem, prompt_text: str, rows: list[RowResult], grades: list[dict],
                 token_ids: bool = False) -> list[dict]:
    records = []
    for row, grade in zip(rows, grades):
        rec = {"problem_id": problem.id, "sample_index": row.sample_index, "prompt": prompt_text,
               "completion": row.text, "extracted": grade.get("extracted"), "correct": grade.get("correct"),
               "tokens": row.num_tokens, "finish_reason": row.finish_reason}
        rec.update({k: v for k, v in grade.items() if k not in ("extracted", "correct")})
        rec.update(row.meta)
        if token_ids:
            rec["token_ids"] = row.token_ids
        if problem.meta:
            rec["problem_meta"] = problem.meta
        records.append(rec)
    return records


def engine_name(cfg: DictConfig) -> str:
    engine = cfg.get("engine")
    return engine.get("name", "hf") if engine is not None else "hf"


# Task keys added after runs were locked, at the value that reproduces what those runs did: left out of the
# fingerprint at that value, so older run folders still resume.
LOCK_NEUTRAL = {"prompt_style": "plain"}


def prepare_store(cfg: DictConfig, out: Path, n: int, problems: list[Problem], shards: Shards, canonical=None):
    """Resume bookkeeping (main process): lock the generation settings, repair a torn samples.jsonl, fold
    in shards a killed sharded run left behind. Returns (store, pending problems, reused count, repairs)."""
    store = SampleStore(out / "samples.jsonl")
    error, repaired = None, {}
    if shards.is_main:
        try:
            check_lock(out, {"model": OmegaConf.to_container(cfg.model, resolve=True),
                             "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
                             # which problems run (limit/subset) may change on resume; how each is prompted may not
                             # (allow_unisolated is about grading; each sample records its checks' isolation)
                             "task": {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items()
                                      if k not in ("limit", "subset", "allow_unisolated")
                                      and not (k in LOCK_NEUTRAL and LOCK_NEUTRAL[k] == v)},
                             "seed": cfg.seed,
                             "ignore_eos": cfg.generation.ignore_eos,
                             # samples of two engines never share a folder (hf runs keep their old lock)
                             **({"engine": engine_name(cfg)} if engine_name(cfg) != "hf" else {})},
                       canonical=canonical and (lambda fp: {**fp, "sampler": canonical(fp.get("sampler") or {})}))
            repaired = store.repair(n)
            store.merge_shards(n)
        except ResumeMismatch as err:
            error = err
    error, repaired = shards.broadcast(error, repaired)  # every process fails alike instead of hanging
    if error is not None:
        raise error
    done = store.completed_problems(n)
    todo = [p for p in problems if p.id not in done]
    if done:
        log.info("resuming in %s: %d of %d problems already complete (%s)", out, len(problems) - len(todo),
                 len(problems), repaired)
    return store, todo, len(problems) - len(todo), repaired


def run(cfg: DictConfig, out_dir: str | Path | None = None) -> dict[str, Any]:
    """One run: validate, load problems, resume what exists, generate + grade + append per problem, then
    summarise into results.json. Several processes shard the problems (esamp.sharding)."""
    t_start = time.perf_counter()
    sampler = build(cfg, "sampler")
    task = build(cfg, "task")
    ks = validate(cfg, sampler, task)
    shards = Shards(cfg)
    try:  # before any data or model loads: a sampler the engine cannot run, or vLLM missing, is one line
        engine = make_engine(cfg.get("engine"), sampler, rows=cfg.generation.batch_prompts * sampler.n)
    except EngineError as err:
        raise ConfigError(str(err)) from err
    if engine.name != "hf" and shards.num_processes > 1:
        raise ConfigError(f"engine={engine.name} runs in one process (use vLLM's own parallelism), not sharded")
    out = shards.folder(Path(out_dir or cfg.get("output_dir") or "."))
    out.mkdir(parents=True, exist_ok=True)
    try:
        problems = task.load()
    except DataNotFound as err:
        raise ConfigError(str(err)) from err
    if not problems:
        raise ConfigError(f"task {task.name!r} selected no problems (check task.limit / task.subset)")
    store, todo, reused, repaired = prepare_store(cfg, out, sampler.n, problems, shards,
                                                     canonical=sampler.canonical_settings)
    todo, store = shards.split(todo, store)

    lm = engine.load(shards.model_cfg(cfg))
    task.prepare(lm)
    logger = build(cfg, "logger") if shards.is_main else NullLogger()
    logger.start(OmegaConf.to_container(cfg, resolve=True), out)
    bar = tqdm(total=reused + len(todo), initial=reused, desc=f"{task.name} x{sampler.n}",
               unit="problem", dynamic_ncols=True, disable=not shards.is_main)
    texts = [lm.render(p.prompt) for p in todo]
    # Grading (sympy in worker processes, sandboxed code) runs on one thread while decoding goes on; each
    # problem's records are appended (fsynced) as soon as it is graded.
    grader = ThreadPoolExecutor(1, thread_name_prefix="esamp-grade")
    graded: list[Future] = []

    def grade_and_store(i: int, rows: list[RowResult]) -> None:
        grades = task.grade_many(todo[i], [r.text for r in rows])
        store.append(make_records(todo[i], texts[i], rows, grades, token_ids=task.store_token_ids))
        bar.update(1)

    # the sampler's telemetry of every part of this run (resumed runs), saved periodically; shards: main only
    telemetry_log = TelemetryLog(out / "telemetry.jsonl") if shards.num_processes == 1 else None
    def submit_grading(i: int, rows: list[RowResult]) -> Future:
        for fut in graded:  # a grading failure stops the run now, not after hours of generation
            if fut.done() and fut.exception() is not None:
                raise fut.exception()
        return grader.submit(grade_and_store, i, rows)

    try:
        # One call: `batch_prompts` prompts in flight, a finished prompt's slot takes the next one at once.
        result = engine.generate(lm, sampler, texts, [p.id for p in todo], max_new_tokens=task.max_new_tokens,
                          seed=cfg.seed, batch_prompts=cfg.generation.batch_prompts,
                          stop_strings=tuple(task.stop_strings), ignore_eos=cfg.generation.ignore_eos,
                          on_prompt_done=lambda i, rows: graded.append(submit_grading(i, rows)),
                          on_snapshot=(lambda tel, st: telemetry_log.save(tel, stats=vars(st))) if telemetry_log
                          else None,
                          snapshot_every=float(cfg.generation.telemetry_every))
    finally:
        grader.shutdown(wait=True)
    for fut in graded:
        fut.result()  # a grading failure is an error of the run, never a silently missing problem
    stats, telemetry = result.stats, [result.telemetry] if todo else []
    parts = None
    if telemetry_log is not None:
        if todo:
            telemetry_log.save(result.telemetry, final=True, stats=vars(result.stats))
        telemetry = telemetry_log.all()
        stats, parts = _with_earlier_parts(telemetry_log, stats, bool(todo))
    bar.close()

    stats, telemetry = shards.gather(stats, telemetry)
    if not shards.is_main:
        shards.close()
        return {}
    store = SampleStore(out / "samples.jsonl")
    store.merge_shards(sampler.n)
    wanted = {p.id for p in problems}
    stored = store.load()
    records = [r for r in stored if r["problem_id"] in wanted]
    regrade = task.regrade(records)  # on the now idle machine; updates records (dicts shared with `stored`)
    if regrade is not None and regrade["in_this_session"]:
        store.rewrite(stored)  # atomic; each regraded record keeps its earlier verdict (README: samples.jsonl)
    summary = summarize(cfg, task, sampler, lm, records, ks, stats, telemetry, time.perf_counter() - t_start)
    if regrade is not None:
        summary["timeout_regrade"] = regrade
    summary["engine"] = engine.describe()
    summary["resume"] = {"problems_reused": reused, **repaired}
    if parts is not None:
        summary["timing"].update(parts)
        summary["timing"]["tokens_in_samples"] = sum(int(r.get("tokens") or 0) for r in records)
    if shards.num_processes > 1:
        summary["timing"]["processes"] = shards.num_processes
    write_json(out / "results.json", summary)
    print(format_summary(summary, path=out / "results.json"), flush=True)  # what a person reads at the end
    logger.log_summary(summary)
    logger.finish()
    log.info("wrote %s", out / "results.json")
    shards.close()
    return summary


def _with_earlier_parts(log: TelemetryLog, stats: GenerationStats, generated: bool):
    """A resumed run's generation statistics are the sum over its parts (this session's plus what the earlier
    sessions saved in telemetry.jsonl), so tokens/s is that of the whole run, not of its last piece. Returns
    (total stats, timing fields listing the parts) or (stats, None) for a run in one part."""
    earlier, unrecorded = log.earlier_stats()
    if not earlier and not unrecorded:
        return stats, None
    fields = GenerationStats.__dataclass_fields__
    parts = [{k: v for k, v in part.items() if k in fields} for part in earlier] + ([vars(stats)] if generated else [])
    total = GenerationStats.merged([GenerationStats(**part) for part in parts])
    # The totals cover what the parts saved: a part killed between two saves loses what it did after its last
    # one; tokens_in_samples (added by the caller) shows the gap.
    return total, {"generation_parts": parts, "parts_without_stats": unrecorded}


def summarize(cfg, task, sampler, lm, records, ks, stats: GenerationStats, telemetry, wall) -> dict[str, Any]:
    per_problem: dict[str, list[dict]] = {}
    for r in records:
        per_problem.setdefault(r["problem_id"], []).append(r)
    graded = {pid: rs for pid, rs in per_problem.items() if all(r.get("correct") is not None for r in rs)}
    counts = [(len(rs), sum(bool(r["correct"]) for r in rs)) for rs in graded.values()]
    summary: dict[str, Any] = {
        "task": task.name, "sampler": sampler.describe(), "model": {"name": lm.name, "source": lm.source, **lm.info},
        "seed": cfg.seed, "num_problems": len(per_problem), "samples": len(records),
        "pass_at_k": passk_curve(counts, ks, seed=cfg.seed) if counts else None,
        "accuracy": mean_accuracy(counts, seed=cfg.seed) if counts else None,
        "finish_reasons": _count(r["finish_reason"] for r in records),
        "failure_counts": failure_counts(records) if counts else None,
        "timing": {"wall_seconds": wall, "model_load_seconds": lm.load_seconds,
                   "generation_seconds": stats.seconds, "prefill_seconds": stats.prefill_seconds,
                   "tokens_generated": stats.tokens, "decode_steps": stats.steps, "row_steps": stats.row_steps,
                   "compactions": stats.compactions, "admissions": stats.admissions,
                   # kept tokens per computed row-step: what continuous batching wastes on rows that wait
                   # (on a GPU; a CPU step forwards only the active rows, so there it stays ~1)
                   "row_efficiency": stats.tokens / stats.row_steps if stats.row_steps else None,
                   # rows a decode step computed, on average, of batch_prompts x n: a prompt's slot holds its n
                   # rows until its longest sample ends, so few rows per step = short samples waiting on long
                   # ones (on a CPU each step then costs more per row)
                   "rows_per_step": stats.row_steps / stats.steps if stats.steps else None,
                   "tokens_per_second": stats.tokens / stats.seconds if stats.seconds else None},
        "sampler_telemetry": sampler.summarize(telemetry),
        "task_metrics": None,  # filled below, timed: judge perplexity and embeddings can take minutes
        "config": OmegaConf.to_container(cfg, resolve=True),
        "environment": environment(),
    }
    t0 = time.perf_counter()
    summary["task_metrics"] = task.summarize(records)
    summary["timing"]["task_metrics_seconds"] = time.perf_counter() - t0
    summary["timing"]["wall_seconds"] = wall + summary["timing"]["task_metrics_seconds"]
    return summary


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out
