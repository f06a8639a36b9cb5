"""Defaults live only in conf/, and config values are checked by one helper (esamp/checks.py)."""
from __future__ import annotations

import pytest

from esamp import checks
from esamp.configs import CONF_DIR, from_yaml, option

BUILT = [(group, p.stem) for group in ("sampler", "task", "logger") for p in sorted((CONF_DIR / group).glob("*.yaml"))]


@pytest.mark.parametrize("group,name", BUILT)
def test_every_yaml_key_is_a_required_keyword_of_its_constructor(group, name):
    """Drop any one key of the composed yaml and the constructor refuses: no second default hides in Python."""
    from hydra.utils import get_class

    cfg = option(group, name)
    target = get_class(cfg.pop("_target_"))
    if group == "task" and name == "humaneval":
        cfg["allow_unisolated"] = True  # this machine's sandbox may lack isolation; construction is what is tested
    target(**cfg)  # the yaml alone builds it
    for key in cfg:
        with pytest.raises(TypeError, match=f"missing 1 required keyword-only argument: '{key}'"):
            target(**{k: v for k, v in cfg.items() if k != key})


def test_from_yaml_takes_the_yaml_and_refuses_unknown_keys():
    s = from_yaml("sampler", "esamp", n=3)
    assert (s.n, s.beta, s.variant, s.name) == (3, 0.25, "paper", "esamp")  # n overridden, the rest from the yaml
    with pytest.raises(KeyError, match=r"sampler\.betta is not a key of conf/sampler/esamp\.yaml"):
        from_yaml("sampler", "esamp", betta=0.5)
    with pytest.raises(ValueError, match=r"^sampler='nope' is invalid: allowed values are contrastive, "):
        from_yaml("sampler", "nope")
    with pytest.raises(TypeError, match="not a subclass"):
        from_yaml("sampler", "temperature", as_class=dict)


@pytest.mark.parametrize("call,message", [
    (lambda: checks.integer("task.limit", 0, null=True), "task.limit=0 is invalid: allowed values are null or integers >= 1"),
    (lambda: checks.integer("sampler.n", True), "sampler.n=True is invalid: allowed values are integers >= 1"),
    (lambda: checks.integer("sampler.n", 2.0), "sampler.n=2.0 is invalid"),
    (lambda: checks.number("sampler.beta", float("inf"), at_least=0), "allowed values are finite numbers >= 0"),
    (lambda: checks.number("sampler.beta", float("nan"), at_least=0), "sampler.beta=nan is invalid"),
    (lambda: checks.number("sampler.beta", None, at_least=0), "sampler.beta=None is invalid"),
    (lambda: checks.number("sampler.min_p", 1.0, at_least=0, below=1, null=True),
     "allowed values are null or finite numbers in [0, 1)"),
    (lambda: checks.number("sampler.alpha", 0, above=0, at_most=1), "allowed values are finite numbers in (0, 1]"),
    (lambda: checks.number("sampler.temperature", -1, at_least=0, note="(0 = greedy)"), ">= 0 (0 = greedy)"),
    (lambda: checks.one_of("sampler.latent_mixing", 1, ("auto", True, False)), "allowed values are auto, true, false"),
    (lambda: checks.one_of("sampler.state", "solo", ("per_prompt", "shared")), "sampler.state='solo' is invalid"),
    (lambda: checks.flag("task.chat", "yes"), "task.chat='yes' is invalid: allowed values are true, false"),
])
def test_bad_values_fail_in_one_line_naming_key_and_allowed_values(call, message):
    with pytest.raises(checks.ConfigError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_good_values_come_back():
    assert checks.integer("task.limit", None, null=True) is None and checks.integer("sampler.n", 4) == 4
    assert checks.number("sampler.beta", 0) == 0.0 and isinstance(checks.number("sampler.beta", 1), float)
    assert checks.one_of("sampler.latent_mixing", True, ("auto", True, False)) is True
    assert checks.one_of("sampler.latent_mixing", "auto", ("auto", True, False)) == "auto"
