"""SpotFormer and its variants."""
