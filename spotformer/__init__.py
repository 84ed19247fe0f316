"""SpotFormer: multi-scale spatio-temporal transformer for facial expression spotting."""

__version__ = "0.1.0"
