"""Exploratory Sampling (ESamp), the paper's method in one package:

- `sampler`:   ESampSampler, the Sampler the decoding loop calls (fusion, latent mixing, ablations)
- `variants`:  the one home of the method's hyperparameters (paper | tllm) and knob values
- `distiller`: DistillerBank, the per-prompt Distillers as one stacked network
- `trainer`:   OnlineTrainer, the per-slot online Adam/AdamW (serial or async), `make_trainer`
- `taps`:      HiddenTaps, the forward hooks that read the Distiller's source and target states
"""
from esamp.samplers.esamp.sampler import ESampSampler

__all__ = ["ESampSampler"]
