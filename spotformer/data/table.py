"""The one annotation table every loader returns (SPEC.md section 1)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["macro", "micro"]
KINDS: tuple[Kind, Kind] = ("macro", "micro")


@dataclass(frozen=True, order=True)
class Expression:
    """One annotated expression, in the data set's own frame numbers (after any
    conversion the loader documents, e.g. SAMM-LV's /7 subsampling)."""

    subject: str
    video: str
    onset: int
    apex: int
    offset: int
    kind: Kind

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'macro' or 'micro', got {self.kind!r}")
        if not (self.onset <= self.apex <= self.offset):
            raise ValueError(
                f"{self.video}: need onset <= apex <= offset, got "
                f"{self.onset}, {self.apex}, {self.offset}"
            )


@dataclass(frozen=True)
class DroppedRow:
    """A source row a loader could not use, kept so that nothing is lost silently."""

    source: str
    row: int
    reason: str


@dataclass
class AnnotationTable:
    """Expressions plus the rows that were dropped, with why."""

    expressions: list[Expression] = field(default_factory=list)
    dropped: list[DroppedRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.expressions)

    def __iter__(self) -> Iterator[Expression]:
        return iter(self.expressions)

    @property
    def subjects(self) -> list[str]:
        return sorted({e.subject for e in self.expressions})

    @property
    def videos(self) -> list[str]:
        return sorted({e.video for e in self.expressions})

    def for_video(self, video: str) -> list[Expression]:
        return [e for e in self.expressions if e.video == video]

    def for_subject(self, subject: str) -> list[Expression]:
        return [e for e in self.expressions if e.subject == subject]

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the generic CSV ``subject,video,onset,apex,offset,type`` atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["subject", "video", "onset", "apex", "offset", "type"])
            for e in self.expressions:
                w.writerow([e.subject, e.video, e.onset, e.apex, e.offset, e.kind])
        os.replace(tmp, path)
        return path
