"""Every telemetry save records the process's resident memory (now and peak), so a run's memory over time can
be read back from telemetry.jsonl."""
import json
import subprocess
import sys

SCRIPT = """
import sys, torch
from esamp.results import TelemetryLog
log = TelemetryLog(sys.argv[1])
log.save({"loss_curve": [1.0]})
big = torch.ones(64 * 2**20 // 4)  # 64 MiB touched: the next save must see it resident
log.save({"loss_curve": [1.0, 0.5]}, final=True)
"""


def test_each_telemetry_save_records_resident_memory(tmp_path):
    # a fresh interpreter: inside the test session freed heap pages stay resident (esamp.runtime's allocator
    # settings), so a new tensor need not raise the RSS there
    path = tmp_path / "telemetry.jsonl"
    subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, timeout=120)
    first, second = (json.loads(line)["memory"] for line in path.read_text().splitlines())
    assert 10 * 2**20 < first["rss_bytes"] <= first["peak_rss_bytes"]
    assert second["rss_bytes"] - first["rss_bytes"] > 48 * 2**20 and second["peak_rss_bytes"] >= second["rss_bytes"]
