"""Every telemetry save records the process's resident memory (now and peak), so a run's memory over time can
be read back from telemetry.jsonl."""
import json

import torch

from esamp.results import TelemetryLog


def test_each_telemetry_save_records_resident_memory(tmp_path):
    log = TelemetryLog(tmp_path / "telemetry.jsonl")
    log.save({"loss_curve": [1.0]})
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB touched: the next save must see it resident
    log.save({"loss_curve": [1.0, 0.5]}, final=True)
    first, second = (json.loads(line)["memory"] for line in (tmp_path / "telemetry.jsonl").read_text().splitlines())
    assert 10 * 2**20 < first["rss_bytes"] <= first["peak_rss_bytes"]
    assert second["rss_bytes"] - first["rss_bytes"] > 48 * 2**20 and second["peak_rss_bytes"] >= second["rss_bytes"]
    del big
