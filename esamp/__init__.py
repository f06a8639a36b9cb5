"""esamp: Exploratory Sampling (ESamp) and the evaluation harness around it."""

__version__ = "0.1.0"
