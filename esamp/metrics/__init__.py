"""Metrics: Pass@k (here) and diversity (`esamp.metrics.diversity`)."""
from esamp.metrics.passk import default_ks, mean_accuracy, pass_at_k, passk_curve

__all__ = ["pass_at_k", "passk_curve", "default_ks", "mean_accuracy"]
