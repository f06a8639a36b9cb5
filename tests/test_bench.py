"""The throughput benchmark's bookkeeping on a tiny random model (numbers, not speed: speed is measured by
`make bench`, never asserted in tests)."""
import json

import torch

from esamp.bench import flops_per_token, linear_shapes, step_weights


def test_step_weights_are_the_matmuls_counted_as_flops(tiny_lm):
    """The streamed-weight ceiling times exactly the matmuls the FLOP count (and so MFU) counts: every
    nn.Linear once, plus an LM head that is not an nn.Linear."""
    model = tiny_lm.model
    weights = step_weights(model)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(weights) in (len(linears), len(linears) + 1)
    assert all(any(w is m.weight for w in weights) for m in linears)
    assert flops_per_token(model) == sum(2 * w.numel() for w in weights)
    assert linear_shapes(model) == [(w.shape[1], w.shape[0]) for w in weights]


def test_bench_generate_reports_mfu_and_the_streamed_ceiling(tmp_path, capsys):
    from esamp.cli.bench_generate import main

    out = tmp_path / "bench.json"
    assert main(["--model", "tiny-random", "--prompts", "2", "--n", "2", "--new-tokens", "4", "--repeats", "1",
                 "--warmup", "0", "--arms", "loop,esamp", "--json", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "streamed, as in a decode step" in stdout and "MFU" in stdout
    data = json.loads(out.read_text())
    assert set(data["mfu"]) == {"loop", "esamp"} and all(v > 0 for v in data["mfu"].values())
    for peak in data["gemm_peak"]:
        assert peak["rows"] == 4 and peak["step_gemm_streamed_flops"] > 0 and peak["peak_flops"] > 0
