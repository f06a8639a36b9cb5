"""Creative writing: the paper's book-continuation protocol, scored for diversity and coherence.

A passage (a chapter, or ~2,000 words) is split at its middle; the last 32 words of the first half are the
prompt, fed raw (no chat template); the model continues for up to 512 tokens, 16 samples per prompt.
Per prompt over its n samples: mean pairwise embedding cosine, Vendi score, distinct-1/2/3, self-BLEU, the
perplexity of each continuation under a reference model (mean, median and each sample's value), the
divergence curve (mean pairwise cosine of the partial generations every 64 tokens) and the fraction of
samples longer than the embedder reads (all-MiniLM-L6-v2: 256 word pieces; the rest is cut). All of these
are stored per prompt in `task_metrics.per_prompt` (a bootstrap over prompts needs them, see
`esamp.analysis.frontier`) and averaged over prompts at the top level of `task_metrics`. There is no "correct",
so no Pass@k.

The judge model for perplexity (`ppl_model`) is a model config composed by Hydra from the `model` group
(conf/task/creative_writing.yaml: `defaults: - /model@ppl_model: smollm2-135m`); choose another on the
command line with `model@task.ppl_model=qwen2.5-coder-0.5b-pypi`, or skip perplexity with
`task.ppl_model=null`. Nothing here reads conf/ by a path inside the checkout, so the task works from an
installed wheel; a path to a model .yaml file is also accepted."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from esamp import checks
from esamp.tasks.base import Problem, Task
from esamp.tasks.data import data_dir, resolve


def judge_config(ppl_model: Any) -> dict[str, Any] | None:
    """The judge model's config as a plain dict (None: no perplexity). Raises a one-line ValueError naming
    task.ppl_model for anything else, at construction, so a bad judge fails before generation rather than
    after it."""
    from omegaconf import DictConfig, OmegaConf

    if ppl_model is None:
        return None
    if isinstance(ppl_model, (str, Path)) and str(ppl_model).endswith((".yaml", ".yml")):
        if not Path(ppl_model).is_file():
            raise ValueError(f"task.ppl_model={str(ppl_model)!r} is invalid: no such model config file")
        ppl_model = OmegaConf.load(ppl_model)
    if isinstance(ppl_model, DictConfig):
        ppl_model = OmegaConf.to_container(ppl_model, resolve=True)
    if not isinstance(ppl_model, Mapping):
        raise ValueError(f"task.ppl_model={ppl_model!r} is invalid: allowed values are a model config (on the "
                         f"command line: model@task.ppl_model={ppl_model}), a path to a model .yaml, or null")
    if not ppl_model.get("source"):
        raise ValueError(f"task.ppl_model={dict(ppl_model)!r} is invalid: a model config needs a `source` "
                         "(see conf/model/)")
    return dict(ppl_model)


class CreativeWritingTask(Task):
    name = "creative_writing"
    store_token_ids = True  # the divergence curve decodes prefixes of the generated tokens

    def __init__(self, *, books_dir: str | None, num_prompts: int | None, prompt_seed: int, prompt_words: int,
                 max_new_tokens: int, ppl_model: Any, embedder: str | None, divergence_every: int,
                 limit: int | None, name: str, embedder_max_seq_length: int | None):
        self.books_dir, self.prompt_seed, self.embedder_name = books_dir, prompt_seed, embedder
        self.num_prompts = checks.integer("task.num_prompts", num_prompts, null=True)
        self.prompt_words = checks.integer("task.prompt_words", prompt_words)
        self.max_new_tokens = checks.integer("task.max_new_tokens", max_new_tokens)
        self.embedder_max_seq_length = checks.integer("task.embedder_max_seq_length", embedder_max_seq_length,
                                                      null=True)
        self.ppl_model = judge_config(ppl_model)
        self.every = checks.integer("task.divergence_every", divergence_every)
        self.limit = checks.integer("task.limit", limit, null=True)
        self.name = name
        self.lm = None

    def load(self) -> list[Problem]:
        from esamp.data_books import load_book_prompts

        def explicit():
            if not self.books_dir:
                return None
            return load_book_prompts(self.books_dir, self.num_prompts, seed=self.prompt_seed, n_words=self.prompt_words)

        def env():
            d = data_dir()
            if not d or not (d / "books").is_dir():
                return None
            return load_book_prompts(d / "books", self.num_prompts, seed=self.prompt_seed, n_words=self.prompt_words)

        self.source, items = resolve(self.name, [(f"task.books_dir={self.books_dir!r}", explicit),
                                                 ("$ESAMP_DATA_DIR/books", env)])
        items = items[: self.limit] if self.limit else items
        return [Problem(id=it["id"], prompt=it["prompt"], gold=None, meta={"book": it["book"]}) for it in items]

    def prepare(self, lm) -> None:
        self.lm = lm  # the generating model's tokenizer decodes prefixes for the divergence curve

    def grade(self, problem: Problem, completion: str) -> dict[str, Any]:
        return {"correct": None, "extracted": None}

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        from esamp.metrics.diversity import Embedder, diversity_metrics, divergence_curve

        by_prompt: dict[str, list[dict]] = {}
        for r in records:
            by_prompt.setdefault(r["problem_id"], []).append(r)
        embedder = Embedder(self.embedder_name or None, max_seq_length=self.embedder_max_seq_length)
        per_prompt = {pid: diversity_metrics([r["completion"] for r in rs], embedder) for pid, rs in by_prompt.items()}
        keys = [k for k in next(iter(per_prompt.values())) if k != "n"] if per_prompt else []
        out: dict[str, Any] = {k: _nanmean([m[k] for m in per_prompt.values()]) for k in keys}
        out["embedder"] = repr(embedder)
        max_tokens = getattr(embedder, "max_tokens", None)
        if max_tokens and hasattr(embedder, "token_counts") and records:
            # how much of each sample the embedding metrics see: the fraction cut at the embedder's limit
            out["embedder_max_tokens"] = int(max_tokens)
            for pid, rs in by_prompt.items():
                counts = embedder.token_counts([r["completion"] for r in rs])
                per_prompt[pid]["embed_truncated"] = float(np.mean([c > max_tokens for c in counts]))
                per_prompt[pid]["embed_tokens"] = float(np.mean(counts))
            out["embed_truncated"] = _nanmean([m["embed_truncated"] for m in per_prompt.values()])
            out["embed_tokens"] = _nanmean([m["embed_tokens"] for m in per_prompt.values()])

        if self.ppl_model:
            from omegaconf import OmegaConf

            from esamp.metrics.perplexity import continuation_perplexities
            from esamp.models import load_model

            ref = load_model(OmegaConf.create(self.ppl_model))
            ppl = continuation_perplexities(ref, [r["prompt"] for r in records], [r["completion"] for r in records])
            out["perplexity"] = _nanmean(ppl)  # over all samples (= the mean of per-prompt means at equal n)
            out["perplexity_median"] = _nanmedian(ppl)
            out["ppl_model"] = ref.name
            by_pid: dict[str, list[tuple[int, float]]] = {}
            for pos, (r, v) in enumerate(zip(records, ppl)):
                by_pid.setdefault(r["problem_id"], []).append((r.get("sample_index", pos), v))
            for pid, pairs in by_pid.items():
                vs = [v for _, v in sorted(pairs, key=lambda iv: iv[0])]
                per_prompt[pid]["perplexity"] = _nanmean(vs)
                per_prompt[pid]["perplexity_median"] = _nanmedian(vs)
                # each sample's own value, in sample_index order: lets an analysis drop samples (e.g. loops)
                # and re-average without running the judge again
                per_prompt[pid]["perplexities"] = [None if math.isnan(v) else float(v) for v in vs]

        if self.lm is not None and all("token_ids" in r for r in records):
            decode = lambda ids: self.lm.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
            from tqdm.auto import tqdm

            curves = [divergence_curve([r["token_ids"] for r in rs], decode, embedder, every=self.every)
                      for rs in tqdm(by_prompt.values(), desc="divergence curves", unit="prompt")]
            for pid, c in zip(by_prompt, curves):
                per_prompt[pid]["divergence_curve"] = [[p, v] for p, v in c]
            positions = sorted({p for c in curves for p, _ in c})
            out["divergence_curve"] = [[p, _nanmean([v for c in curves for q, v in c if q == p])] for p in positions]
        out["prompts"] = len(by_prompt)
        out["per_prompt"] = per_prompt
        return out


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def _nanmean(values) -> float:
    vals = _finite(values)
    return float(np.mean(vals)) if vals else float("nan")


def _nanmedian(values) -> float:
    vals = _finite(values)
    return float(np.median(vals)) if vals else float("nan")
