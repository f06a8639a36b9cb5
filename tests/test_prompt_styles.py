"""prompt_style=self_review: the ESamp paper's Tree-of-Thoughts-style baseline as a system prompt, put in front
of the task's own messages, recorded verbatim in results.json and in every sample's prompt."""
import json

import pytest
from hydra import compose, initialize_config_dir

from esamp.pipeline import run
from esamp.tasks.prompt_styles import SELF_REVIEW, styled
from tests.conftest import MATH_FIXTURE, ROOT, make_task


def test_self_review_is_the_system_message_in_front_of_the_task_prompt():
    plain = make_task("humaneval", limit=1).load()[0].prompt
    review = make_task("humaneval", limit=1, prompt_style="self_review").load()[0].prompt
    assert [m["role"] for m in plain] == ["user"]
    assert review == [{"role": "system", "content": SELF_REVIEW}] + plain  # the task's own message unchanged
    math_plain = make_task("math500", data_path=str(MATH_FIXTURE), limit=1).load()[0].prompt
    math_review = make_task("math500", data_path=str(MATH_FIXTURE), limit=1,
                            prompt_style="self_review").load()[0].prompt
    assert math_review == [{"role": "system", "content": SELF_REVIEW}] + math_plain


def test_the_rendered_prompt_contains_the_exact_text(tiny_lm):
    prompt = make_task("humaneval", limit=1, prompt_style="self_review").load()[0].prompt
    assert SELF_REVIEW in tiny_lm.render(prompt)


@pytest.mark.parametrize("make,match", [
    (lambda: make_task("humaneval", prompt_style="tree"),
     r"task\.prompt_style='tree' is invalid: allowed values are plain, "
                                                 r"self_review"),
    (lambda: make_task("humaneval", chat=False, prompt_style="self_review"),
     r"task\.prompt_style=self_review is invalid "
                                                                    r"with task\.chat=false"),
    (lambda: make_task("math500", system_prompt="Be brief.", prompt_style="self_review"), r"task\.system_prompt"),
])
def test_bad_combinations_name_the_keys(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_style_never_merges_with_another_system_message():
    with pytest.raises(ValueError, match="system prompt"):
        styled([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], "self_review")
    msgs = [{"role": "user", "content": "y"}]
    assert styled(msgs, "plain") is msgs


def test_run_records_the_style_and_its_exact_text(tmp_path):
    def cfg(extra):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=["model=tiny-random", f"task.data_path={MATH_FIXTURE}",
                                                "task.max_new_tokens=4", "task.limit=1", "sampler=temperature",
                                                "sampler.n=2", *extra])

    run(cfg(["task.prompt_style=self_review"]), out_dir=tmp_path / "review")
    summary = json.loads((tmp_path / "review" / "results.json").read_text())
    assert summary["task_metrics"]["prompt_style"] == {"name": "self_review", "system_prompt": SELF_REVIEW}
    assert summary["config"]["task"]["prompt_style"] == "self_review"
    samples = [json.loads(line) for line in (tmp_path / "review" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(SELF_REVIEW in s["prompt"] for s in samples)
    run(cfg([]), out_dir=tmp_path / "plain")  # a plain run records no style and its prompt has no such text
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    assert "prompt_style" not in (plain["task_metrics"] or {})
    assert SELF_REVIEW not in (tmp_path / "plain" / "samples.jsonl").read_text()
    # the lock leaves the neutral `plain` out (folders locked before the key existed resume), a style in
    locks = {name: json.loads((tmp_path / name / "run.lock.json").read_text())["task"] for name in ("plain", "review")}
    assert "prompt_style" not in locks["plain"] and locks["review"]["prompt_style"] == "self_review"


def test_run_tables_tell_a_prompt_style_arm_apart_from_the_plain_one():
    from esamp.analysis.sweep import frame, summary_columns

    def run(name, style=None):
        metrics = {"prompt_style": {"name": style, "system_prompt": SELF_REVIEW}} if style else {}
        return {"_run_dir": name, "task": "humaneval", "model": {"name": "m"}, "seed": 0,
                "sampler": {"name": "temperature", "temperature": 1.0, "n": 4}, "task_metrics": metrics,
                "pass_at_k": {"k": [1], "pass_at_k": [0.5]}}

    df = frame([run("plain"), run("review", "self_review")])
    labels = dict(zip(df["run_dir"], df["label"]))
    assert labels == {"plain": "temperature prompt_style=plain", "review": "temperature prompt_style=self_review"}
    assert "prompt_style" in summary_columns(df)
    alone = frame([run("plain"), run("plain2")])  # same style everywhere: not a column, not in the label
    assert "prompt_style" not in summary_columns(alone) and set(alone["label"]) == {"temperature", "temperature #2"}
