"""shadowd: replay mirrored production requests against a candidate model and gate its canary."""

__version__ = "0.1.0"
