"""The end-of-run report: failure reasons counted from real graded samples, and the text made from committed
results.json files of real runs (tests/fixtures: a Qwen2.5-Coder-0.5B MATH-500 ESamp run, a SmolLM2
creative-writing run)."""
import copy
import json
import math

import pytest

from esamp.grading.math import grade_math
from esamp.report import failure_counts, format_summary
from tests.conftest import FIXTURES

MATH_RESULTS = FIXTURES / "results_math500_esamp.json"
WRITING_RESULTS = FIXTURES / "results_creative_writing_temperature.json"
SAMPLES = FIXTURES / "math500_qwen05_esamp_samples.jsonl"  # 3 problems x 8 real completions, with gold answers


def load(path):
    return json.loads(path.read_text())


def test_failure_counts_on_regraded_real_samples():
    records = [json.loads(line) for line in SAMPLES.read_text().splitlines()]
    regraded = [{**r, **grade_math(r["completion"], r["gold"])} for r in records]
    # the grader still agrees with what the run recorded, sample by sample
    assert [r["correct"] for r in regraded] == [r["correct"] for r in records]
    counts = failure_counts(regraded)
    # 24 samples, 4 correct; 6 ran out of tokens before any \boxed{}, 14 boxed a wrong answer
    assert counts == {"wrong": 14, "no_answer": 6}
    assert list(counts) == ["wrong", "no_answer"]  # most frequent first
    # "no_answer" is exactly the samples whose text has no box at all (mostly cut off by max_new_tokens)
    key = lambda r: (r["problem_id"], r["sample_index"])  # noqa: E731
    assert {key(r) for r in regraded if r["failure"] == "no_answer"} == \
        {key(r) for r in records if "\\boxed" not in r["completion"]}


def test_failure_counts_skips_correct_and_ungraded():
    records = [{"correct": True, "failure": None}, {"correct": None}, {"correct": None, "failure": "wrong"},
               {"correct": False, "failure": "timeout"}, {"correct": False, "failure": "wrong"},
               {"correct": False, "failure": "wrong"}, {"correct": False}]  # the last: an older run's record
    assert failure_counts(records) == {"wrong": 2, "timeout": 1, "unrecorded": 1}
    assert failure_counts([]) == {} and failure_counts([{"correct": True}]) == {}


def test_format_summary_of_a_real_math_run():
    text = format_summary(load(MATH_RESULTS), path="outputs/x/results.json")
    lines = text.splitlines()
    assert lines[0] == "math500 | esamp (n=8) | qwen2.5-coder-0.5b-instruct | 12 problems, 96 samples"
    # Pass@k per k with its interval, as percentages of the numbers in results.json
    assert lines[1] == "Pass@k (95% bootstrap interval over problems):"
    assert lines[2:6] == ["  k=1      7.3%  [2.1%, 13.5%]", "  k=2     13.7%  [4.2%, 25.6%]",
                          "  k=4     24.4%  [8.3%, 43.5%]", "  k=8     41.7%  [16.7%, 66.7%]"]
    assert "Accuracy           7.3%  [2.1%, 13.5%]" in lines
    assert "Throughput         159.0 tokens/s (29,635 tokens in 186.4 s of generation; wall 189.5 s)" in lines
    assert "Finish reasons     eos 67 (70%), length 29 (30%)" in lines
    assert "Distiller loss     first 30.17 -> last 20.8, -31% over 1,149 training steps" in lines
    assert lines[-1] == "Results            outputs/x/results.json"
    assert not any(line.startswith("Failure reasons") for line in lines)  # this run predates failure_counts


def test_format_summary_shows_failure_reasons_and_partial_k():
    summary = load(MATH_RESULTS)
    summary["failure_counts"] = {"wrong": 60, "no_answer": 29}
    summary["pass_at_k"]["problems"][-1] = 11  # e.g. a resumed run where one problem has fewer samples
    lines = format_summary(summary).splitlines()
    assert "Failure reasons    wrong 60 (67%), no_answer 29 (33%)" in lines
    assert lines[5].endswith("over 11 problems") and not lines[4].endswith("problems")
    assert not any(line.startswith("Results") for line in lines)  # no path given
    summary["failure_counts"] = {}
    assert "Failure reasons    none (every graded sample is correct)" in format_summary(summary).splitlines()


def test_format_summary_of_an_ungraded_run():
    lines = format_summary(load(WRITING_RESULTS)).splitlines()
    assert lines[0] == "creative_writing | temperature (n=8) | smollm2-135m-instruct | 20 problems, 160 samples"
    assert "Pass@k             not graded (this task has no correct answers)" in lines
    metrics = next(line for line in lines if line.startswith("Task metrics"))
    assert "vendi 6.459" in metrics and "perplexity 48.22" in metrics and "under smollm2-135m-instruct" in metrics
    assert not any(line.startswith(("Accuracy", "Distiller")) for line in lines)  # no grading, no ESamp
    summary = load(WRITING_RESULTS)
    summary["failure_counts"] = {}  # nothing graded, so nothing failed: no "every sample is correct" line
    assert not any(line.startswith("Failure") for line in format_summary(summary).splitlines())


@pytest.mark.parametrize("damage", [
    lambda s: s.clear(),
    lambda s: s.update(pass_at_k=None, accuracy=None, sampler_telemetry=None, timing=None, finish_reasons=None),
    lambda s: s["sampler_telemetry"].update(first_loss=float("nan"), last_loss=None),
    lambda s: s["timing"].update(tokens_per_second=None, generation_seconds=math.inf),
    lambda s: s.update(sampler="esamp", model=None, task_metrics=[1, 2]),
])
def test_format_summary_never_raises_on_partial_summaries(damage):
    summary = copy.deepcopy(load(MATH_RESULTS))
    damage(summary)
    text = format_summary(summary, path="r.json")
    assert text.splitlines()[-1].endswith("r.json")
    assert "nan" not in text and "inf" not in text
