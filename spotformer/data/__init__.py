"""Annotation loaders, labels and the synthetic benchmark."""

from spotformer.data.annotations import load_annotations, load_casme2, load_csv, load_samm
from spotformer.data.table import KINDS, AnnotationTable, DroppedRow, Expression, Kind, VideoRef

__all__ = [
    "KINDS",
    "AnnotationTable",
    "DroppedRow",
    "Expression",
    "Kind",
    "VideoRef",
    "load_annotations",
    "load_casme2",
    "load_csv",
    "load_samm",
]
