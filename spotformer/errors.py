"""Typed errors of the spotformer package."""

from __future__ import annotations


class SpotFormerError(Exception):
    """Base class for user-facing errors."""


class AnnotationError(SpotFormerError):
    """An annotation file is missing, malformed or in the wrong format; the message names it."""
