"""pythia-suite: what had the model seen at step N, what did it know, and how does it change with scale."""

__version__ = "0.1.0"
