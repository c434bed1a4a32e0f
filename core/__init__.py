"""mlsan-live core: the ML-SAN model, features, data, training and evaluation (no devices)."""

__version__ = "0.1.0"
