"""Prompt styles: a system prompt a task puts in front of its chat messages (`task.prompt_style=NAME`).

`self_review` is the ESamp paper's Tree-of-Thoughts-style baseline realised as one prompt: the model is asked
to lay out several approaches, review each and continue with the one that survives, within a single sample
(the paper lists a ToT-style self-review baseline; its exact wording was not available offline, so the text
below is ours and is recorded verbatim in results.json, `task_metrics.prompt_style`, and in every sample's
`prompt`). On Qwen2.5 chat templates a system message replaces the template's default system prompt ("You
are Qwen, created by Alibaba Cloud. ..."), so this arm also differs from the plain arms by that line.

The resume lock (`run.lock.json`) leaves `prompt_style: plain` out of its fingerprint (esamp/pipeline.py,
LOCK_NEUTRAL): run folders locked before the key existed resume as they did.
"""
from __future__ import annotations

from typing import Any

from esamp import checks

SELF_REVIEW = (
    "You solve problems the way a careful expert searches a tree of ideas. Before committing to an answer, "
    "briefly write down two or three genuinely different approaches to the problem. Review each one "
    "critically: check it against the problem statement, the edge cases and your own earlier steps, and say "
    "which approaches fail the review and why. Then carry out the approach that survives the review, "
    "double-check the result, and give the final answer in exactly the format the user asks for."
)

PROMPT_STYLES: dict[str, str | None] = {"plain": None, "self_review": SELF_REVIEW}


def check_prompt_style(style: str | None) -> str:
    """The style's name, or a one-line ValueError naming the key and the allowed values."""
    return checks.one_of("task.prompt_style", style, PROMPT_STYLES)


def system_prompt(style: str) -> str | None:
    return PROMPT_STYLES[check_prompt_style(style)]


def styled(messages: list[dict[str, str]], style: str) -> list[dict[str, str]]:
    """`messages` with the style's system prompt in front (unchanged for `plain`). A style never merges
    with another system prompt: two instructions in one slot would be neither arm's prompt."""
    text = system_prompt(style)
    if text is None:
        return messages
    if any(m.get("role") == "system" for m in messages):
        raise ValueError(f"task.prompt_style={style} cannot be combined with a system prompt of the task "
                         "(task.system_prompt): set one of them")
    return [{"role": "system", "content": text}] + messages


def record(style: str) -> dict[str, Any]:
    """What results.json keeps about the style: its name and exact system prompt (nothing for `plain`)."""
    text = system_prompt(style)
    return {} if text is None else {"prompt_style": {"name": style, "system_prompt": text}}
