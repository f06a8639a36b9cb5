"""Metrics: Pass@k (here) and diversity (`esamp.metrics.diversity`)."""
from esamp.metrics.passk import default_ks, mean_accuracy, pass_at_k, passk_curve

from pathlib import Path as _Path

# A local-path `evaluate` metric module (works offline): evaluate.load(EVALUATE_PASSK_PATH)
EVALUATE_PASSK_PATH = str(_Path(__file__).with_name("evaluate_passk"))

__all__ = ["pass_at_k", "passk_curve", "default_ks", "mean_accuracy", "EVALUATE_PASSK_PATH"]
