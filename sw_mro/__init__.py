"""SW-MRO: sliding-window main-directional-mean-optical-flow features, batched on the device."""

__version__ = "0.1.0"
