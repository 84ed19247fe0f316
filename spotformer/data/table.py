"""The one annotation table every loader returns (SPEC.md section 1).

Frame-index convention
----------------------
Every :class:`Expression` holds **0-based frame indices into the decoded, subsampled
frame sequence**: the index ``i`` of ``sw_mro.io.open_video(path, stride=s)``, whose
frame ``i`` is source frame ``i * s`` (0-based). So:

- CAS(ME)^2 (30 fps, ``stride=1``): its files are 1-based (``img1.jpg`` is frame 1),
  so the loader subtracts 1.
- SAMM-LV (200 fps, ``stride=7``): its files are 1-based too, and the loader maps a
  source frame ``f`` to ``(f - 1) / 7``, rounding onset/offset and flooring apex.
- The generic CSV (:meth:`AnnotationTable.to_csv`, ``load_csv``) stores these indices
  as they are, so a table round-trips through it unchanged.

Where a loader knows the video behind each ``video`` id, ``AnnotationTable.sources``
maps the id to a :class:`VideoRef` (path, fps and the stride the indices assume), so
``open_video(ref.path, stride=ref.stride, fps=ref.fps)`` gives the frames the indices
count.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sw_mro.io.atomic import atomic_path

Kind = Literal["macro", "micro"]
KINDS: tuple[Kind, Kind] = ("macro", "micro")

# Every reader refuses a frame number at or above this (CSV intervals, the annotation CSV,
# the workbooks): far beyond any video (2**31 frames is over 2 years at 30 fps), and it
# keeps frames inside the int64/int32 arrays that matching and labels build.
FRAME_LIMIT = 2**31


def frame_too_large(column: str, value: object) -> str:
    """The message for a frame at or above :data:`FRAME_LIMIT` (callers add the place)."""
    return f"{column} = {value!r} is too large; frame numbers must be below 2**31 ({FRAME_LIMIT})"


def parse_kind(value: Any) -> Kind | None:
    """An expression type as every reader spells it, or None: case and surrounding spaces
    aside, ``macro...`` (macro, macro-expression, SAMM-LV's Macro) or ``MaE`` is macro,
    ``micro...`` (micro, micro-expression, SAMM-LV's ``Micro - 1/2``) or ``ME`` is micro."""
    text = "" if value is None else str(value).strip().lower()
    if text == "mae" or text.startswith("macro"):
        return "macro"
    if text == "me" or text.startswith("micro"):
        return "micro"
    return None


# SPEC's label ranges and post-processing windows are whole frames at 30 fps, and the
# authors' code uses them unchanged on SAMM-LV's subsampled 200/7 ~ 28.6 fps. A frame
# rate this close to the reference (relative) keeps the numbers as they are; others
# scale them by fps / ref_fps.
SAME_RATE_TOLERANCE = 0.05


def common_rate(rates: Sequence[float]) -> float | None:
    """The frame rate that ``rates`` share (their median) where the fastest and the
    slowest are the same rate as :func:`rate_scale` counts it, else None (mixed rates,
    or no rate at all).

    Examples:
        >>> common_rate([30.0, 29.97, 200 / 7]), common_rate([25.0, 30.0]), common_rate([])
        (29.97, None, None)
    """
    if not rates:
        return None
    ordered = sorted(float(r) for r in rates)
    if rate_scale(ordered[-1], ordered[0]) != 1.0:
        return None
    return ordered[len(ordered) // 2]


def rate_scale(fps: float, ref_fps: float) -> float:
    """Factor from frames at ``ref_fps`` to frames at ``fps``: 1 within
    :data:`SAME_RATE_TOLERANCE` of ``ref_fps`` either way (29.97 fps, SAMM-LV's 200/7
    against 30, and 30 against 200/7), else ``fps / ref_fps``. Either way: 30 / (200/7)
    is 1.05 plus a rounding error, which made 30 fps "another rate" for a SAMM-LV model
    while 200/7 was "the same" for a 30 fps one (found in review)."""
    for name, rate in (("fps", fps), ("ref_fps", ref_fps)):
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"{name} must be a finite frame rate > 0, got {rate!r}")
    s = fps / ref_fps
    # + 1e-9: the boundary is in (found in review: 1 - 28.5 / 30 is 0.05 plus a rounding
    # error, so 28.5 fps was scaled while 31.5 fps was not)
    same = min(abs(s - 1.0), abs(1.0 / s - 1.0)) <= SAME_RATE_TOLERANCE + 1e-9
    return 1.0 if same else s


@dataclass(frozen=True, order=True)
class Expression:
    """One annotated expression: 0-based frame indices into the decoded (and
    subsampled) frame sequence, ``onset <= apex <= offset``, both ends inclusive."""

    subject: str
    video: str
    onset: int
    apex: int
    offset: int
    kind: Kind
    #: Where the annotation file gives it ("FILE line N", "FILE sheet S row N"), for
    #: messages; "" when built otherwise. Not compared, hashed or shown in repr.
    where: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'macro' or 'micro', got {self.kind!r}")
        if not (0 <= self.onset <= self.apex <= self.offset):
            raise ValueError(
                f"{self.video}: need 0 <= onset <= apex <= offset (0-based frames), got "
                f"{self.onset}, {self.apex}, {self.offset}"
            )
        if self.offset >= FRAME_LIMIT:
            raise ValueError(f"{self.video}: {frame_too_large('offset', self.offset)}")


@dataclass(frozen=True)
class DroppedRow:
    """A source row a loader could not use, kept so that nothing is lost silently.

    ``source`` names the file (and sheet), ``row`` is the 1-based row (xlsx) or line
    (CSV) number in that file.
    """

    source: str
    row: int
    reason: str


@dataclass(frozen=True)
class VideoRef:
    """Where the frames of one ``video`` id live, and how to decode them.

    ``path``: a video file or a frame folder. ``fps``: the source frame rate (``None``:
    the container's rate for a file, 30.0 for a folder). ``stride``: the temporal
    subsampling the table's frame indices assume (7 for SAMM-LV). ``subject``: whose
    video it is (``None`` if the loader cannot tell), so that leave-one-subject-out can
    place videos without annotated expressions. Open it with
    ``sw_mro.io.open_video(ref.path, stride=ref.stride, fps=ref.fps)``.
    """

    path: Path
    fps: float | None = None
    stride: int = 1
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"{self.path}: fps must be a positive number, got {self.fps!r}")
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"{self.path}: stride must be an int >= 1, got {self.stride!r}")


CSV_COLUMNS = ("subject", "video", "onset", "apex", "offset", "type")
CSV_SOURCE_COLUMNS = ("path", "fps", "stride")


@dataclass
class AnnotationTable:
    """Expressions plus the rows that were dropped (with why) and, optionally, where
    each video lives (``sources``, keyed by ``video`` id; it may also list videos
    without any annotated expression, which still count for false positives)."""

    expressions: list[Expression] = field(default_factory=list)
    dropped: list[DroppedRow] = field(default_factory=list)
    sources: dict[str, VideoRef] = field(default_factory=dict)

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
        """Write the generic CSV ``subject,video,onset,apex,offset,type`` atomically.

        When ``sources`` is not empty, the columns ``path,fps,stride`` follow (paths
        relative to the CSV's folder where possible), and a video in ``sources`` with
        no expression gets one row with empty frame columns, so ``load_csv`` reads
        back the same table (``dropped`` aside: it is not a property of the data).
        """
        path = Path(path)
        with_sources = bool(self.sources)
        header = list(CSV_COLUMNS) + (list(CSV_SOURCE_COLUMNS) if with_sources else [])

        def source_cells(video: str) -> list[str]:
            ref = self.sources.get(video)
            if ref is None:
                return ["", "", ""]
            return [
                _relative_to(ref.path, path.parent),
                "" if ref.fps is None else repr(float(ref.fps)),
                str(ref.stride),
            ]

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")  # as write_intervals: Unix line ends
            w.writerow(header)
            for e in self.expressions:
                row: list[object] = [e.subject, e.video, e.onset, e.apex, e.offset, e.kind]
                w.writerow(row + (source_cells(e.video) if with_sources else []))
            annotated = {e.video for e in self.expressions}
            for video in sorted(set(self.sources) - annotated):
                subject = self.sources[video].subject or ""
                w.writerow([subject, video, "", "", "", ""] + source_cells(video))
        return path


class RepeatCheck:
    """Finds ground-truth rows that repeat an earlier row (same video, onset, offset and
    type) and words the warning for them; a repeated row is **kept**.

    The MEGC protocol counts every annotation row as a ground truth, and SPEC's counts of
    the data sets (CAS(ME)^2 300 MaE / 57 ME, SAMM-LV 343 / 159) are of the rows as
    released: dropping a repeat would change the number of ground truths and make F1
    incomparable with published results. So a repeat is counted (a second ground truth,
    which only a second proposal can match) and reported, the warning naming the file,
    the row and the earlier row it repeats, and saying to delete one in the file if it is
    a mistake. Used by the annotation loaders and by ``read_ground_truth``, so training
    and ``spotformer evaluate`` agree. Rows are compared in the file's own frame numbers
    (a workbook's before any conversion), so only rows that repeat one another in the
    file are reported. Predictions are not checked (a repeated proposal is a false
    positive).

    ``source`` names the file (and sheet) in the warning; ``unit`` is how the file
    numbers its rows (``"row"`` in a workbook, ``"line"`` in a CSV).
    """

    def __init__(self, source: str, unit: str) -> None:
        self.source, self.unit = source, unit
        # (video, onset, offset, type) -> (first row, its apex), and times seen
        self._first: dict[tuple[str, float, float, str], tuple[int, float | None]] = {}
        self._count: dict[tuple[str, float, float, str], int] = {}

    def check(
        self,
        row: int,
        video: str,
        onset: float,
        offset: float,
        kind: str,
        apex: float | None = None,
    ) -> str | None:
        """None for a first occurrence (remembered), else the warning for ``row``, which
        the caller logs and keeps."""
        key = (video, onset, offset, kind)
        first = self._first.get(key)
        n = self._count.get(key, 0) + 1
        self._count[key] = n
        if first is None:
            self._first[key] = (row, apex)
            return None
        first_row, first_apex = first
        apex_note = (
            f"; apex {_num(apex)} here, {_num(first_apex)} there"
            if apex is not None and first_apex is not None and apex != first_apex
            else ""
        )
        times = "twice" if n == 2 else f"{n} times"
        u = self.unit
        return (
            f"{self.source} {u} {row} repeats {u} {first_row} (same video {video!r}, onset "
            f"{_num(onset)}, offset {_num(offset)} and type {kind}{apex_note}): kept, so this "
            f"expression is counted {times}, as the MEGC protocol counts every annotation "
            f"row; if the repeat is a mistake, delete {u} {row} in the file"
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def read_csv_records(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    error: Callable[[str], Exception],
    binary_hint: str,
) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV as ``(line, {column: stripped text})`` for the ``required`` and
    ``optional`` columns (other columns are ignored); both CSV readers (``read_intervals``
    and ``load_csv``) use it, so they check a file the same way.

    Column names are matched without case and surrounding spaces. Lines count from 1,
    the header being line 1. Blank lines and rows whose fields are all empty are left
    out. Raises ``error(message)``, the message naming the file (and the line), for: a
    file that cannot be opened or is not UTF-8 text (``binary_hint`` says what to give
    instead), an empty file, a required column missing (with a hint when the file seems
    separated by ``;`` or tabs), a column this reader uses that appears twice, a row with
    more non-empty fields than the header, and a row too short to reach a required column.
    """
    need = ",".join(required) + "".join(f"[,{c}]" for c in optional)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # -sig: Excel writes a BOM
    except OSError as exc:
        raise error(f"{path}: cannot open ({exc.strerror})") from exc
    line = 0
    try:
        with fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise error(f"{path}: the file is empty; it needs at least the header {need}")
            names = [h.strip().lower() for h in header]
            known = set(required) | set(optional)
            for name in dict.fromkeys(names):
                if name in known and names.count(name) > 1:
                    cols = ", ".join(str(i + 1) for i, n in enumerate(names) if n == name)
                    raise error(
                        f"{path}: line 1: duplicate column {name!r} (columns {cols}); "
                        "keep one, the reader cannot tell which is meant"
                    )
            missing = [c for c in required if c not in names]
            if missing:
                seps = [s for s in (";", "\t") if any(s in h for h in header)]
                hint = (
                    f"; the file seems to be separated by {seps[0]!r}, not ',': save it as "
                    "comma-separated"
                    if seps
                    else ""
                )
                raise error(
                    f"{path}: line 1: missing column(s) {', '.join(missing)} (need {need}){hint}"
                )
            index = {n: names.index(n) for n in known if n in names}
            last_required = max(index[c] for c in required)
            out: list[tuple[int, dict[str, str]]] = []
            while True:
                line = reader.line_num + 1  # where the next record starts
                fields = next(reader, None)
                if fields is None:
                    break
                if not any(f.strip() for f in fields):
                    continue  # a blank line, or a row of empty fields
                n, m = len(fields), len(names)
                if n > m and any(f.strip() for f in fields[m:]):
                    extra = ", ".join(repr(f) for f in fields[m:][:3])
                    raise error(
                        f"{path}: line {line} has {n} fields, the header has {m} (extra: "
                        f"{extra}); quote a field that holds a comma"
                    )
                if n <= last_required:
                    raise error(
                        f"{path}: line {line} has {n} fields, the header has {m}; "
                        "a field is missing"
                    )
                out.append(
                    (line, {c: (fields[i] if i < n else "").strip() for c, i in index.items()})
                )
            return out
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not a UTF-8 text CSV ({exc.reason} at byte {exc.start}); {binary_hint}"
        ) from exc
    except csv.Error as exc:
        raise error(f"{path}: line {line}: not a readable CSV row ({exc})") from exc


def _relative_to(target: Path, folder: Path) -> str:
    """``target`` relative to ``folder`` when both are on the same drive, else absolute."""
    try:
        return Path(os.path.relpath(Path(target).absolute(), Path(folder).absolute())).as_posix()
    except ValueError:  # different drives on Windows
        return str(Path(target).absolute())
