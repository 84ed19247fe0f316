"""SW-MRO: sliding-window main-directional-mean-optical-flow features, batched on the device.

>>> import sw_mro
>>> features = sw_mro.extract("video.mp4")  # doctest: +SKIP

``extract``, ``stream`` and ``FeatureChunk`` are imported on first use, so that
``import sw_mro`` (and ``sw-mro --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sw_mro.config import SWMROConfig

__version__ = "0.1.0"

__all__ = ["FeatureChunk", "SWMROConfig", "__version__", "extract", "stream"]

if TYPE_CHECKING:
    from sw_mro.pipeline import FeatureChunk, extract, stream


def __getattr__(name: str) -> Any:
    if name in ("FeatureChunk", "extract", "stream"):
        from sw_mro import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'sw_mro' has no attribute {name!r}")
