"""Annotation loaders, labels and the synthetic benchmark."""

from spotformer.data.table import KINDS, AnnotationTable, DroppedRow, Expression, Kind

__all__ = ["KINDS", "AnnotationTable", "DroppedRow", "Expression", "Kind"]
