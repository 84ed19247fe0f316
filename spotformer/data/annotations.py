"""Annotation loaders: CAS(ME)^2 xlsx, SAMM-LV xlsx and the generic CSV (SPEC.md section 1).

Each returns an :class:`~spotformer.data.table.AnnotationTable` whose frames are
**0-based indices into the decoded (and subsampled) frame sequence** (see
``spotformer/data/table.py``). Rows that cannot be used are kept in ``table.dropped``
with the reason, and each is logged as a warning; nothing is lost silently. A file that
is malformed (a missing sheet or column, a non-numeric frame, an unknown type, a name
the naming rules do not know, a frame number of 2**31 or more, a formula cell saved
without its computed value) raises :class:`~spotformer.errors.AnnotationError` whose
one-line message names the file, the sheet and the row (a CSV: the line, the header
being line 1).

**Repeated rows.** A row with the same video, onset, offset and type as an earlier row
(compared in the file's own frame numbers) is **kept** and reported with a warning
(:class:`~spotformer.data.table.RepeatCheck`): the MEGC protocol counts every annotation
row as a ground truth, so dropping it would change the data set's counts and make F1
incomparable with published results. It is not in ``table.dropped``; if it is a
mistake, delete one of the two rows in the file.

**Missing values** (CAS(ME)^2 and SAMM-LV; their frames are 1-based, so a blank, 0 or
negative frame, such as SAMM's apex -1, is *missing*):

- offset missing -> offset = apex;
- apex missing -> apex = (onset + offset) // 2 (floor, in the file's own frames);
- onset missing (and the other two given) -> onset = 1, the video's first frame, with a
  warning: the expression is under way when the recording starts. SAMM-LV has 12 such
  macro-expressions, and its published count (343 MaE) includes them, as does the
  SpotFormer authors' SAMM-LV table (start frame 0); dropping them changed the counts;
- two or more of onset/apex/offset missing -> the row is dropped;
- offset < onset after filling -> the row is dropped;
- an apex outside [onset, offset] after filling -> the row is **kept** and the apex moved
  to the nearer end, with a warning: the MEGC protocol scores every row by its onset and
  offset, so dropping it would change the data set's counts of ground truths (the apex
  only places the labels' apex target).

**CAS(ME)^2** (:func:`load_casme2`), file ``CAS(ME)^2code_final.xlsx``, no header rows:

- sheet ``CASFEcode_final``: A subject index, B expression name (``anger1_1``; the
  video name is the part before ``_``), C onset, D apex, E offset, H
  ``macro-expression`` / ``micro-expression``;
- sheet ``naming rule1``: A subject number (15), B folder (``s15``), and optionally C the
  subject index of column A above (on every row or on none). Without a C column the
  sheet is row-aligned: its row ``k`` describes subject index ``k``;
- sheet ``naming rule2``: A video code (``0101``, text or number), B video name
  (``disgust1``; one code per name).

IDs: ``subject = "s15"`` (the frame folder under ``rawpic/``), ``video =
"s15/15_0101"`` (subject folder / subject number _ video code), which is the prefix of
the frame folder ``rawpic/s15/15_0101disgustingteeth/``. Frames: ``index = frame - 1``
(``img1.jpg`` is index 0), 30 fps, stride 1.

**SAMM-LV** (:func:`load_samm`), sheet ``FACS_Movement_Only``: 9 preamble rows and a
header row (row 10 in the releases; it is found by its column names Subject, Filename,
Onset, Apex, Offset, Type in the first 30 rows). ``Filename`` ``006_1_1`` is expression 1
of video ``006_1`` of subject ``006``. Types ``Macro`` and ``Micro - 1/2``. Frames are
1-based at 200 fps and may be fractional; with subsample ``s`` (default 7, the paper's
200 -> 28.6 fps) the loader fills missing values in source frames, then maps a frame
``f`` to ``(f - 1) / s``, **rounding** onset and offset (halves up) and **flooring**
apex, and finally clamps apex into [onset, offset] (rounding can push onset past a
floored apex). The paper divides ``f / 7`` instead; ``(f - 1) / s`` is what
``open_video(..., stride=s)`` decodes (its index ``i`` is 1-based source frame
``s i + 1``), and the two differ by ``1 / s`` of a subsampled frame before rounding, so
a converted index differs from the paper's by at most 1: one lands a frame earlier
wherever ``(f - 1) / 7`` and ``f / 7`` round (onset, offset) or floor (apex) apart,
for whole frames onsets and offsets with ``f mod 7 == 4`` and apexes with ``f mod 7 ==
0`` (about 1 in 7 each), for fractional ones likewise (onset 10.5: 1, the paper's 2);
a deliberate departure from SPEC section 1, which follows the paper. (The apex
only places the labels' apex target; it is not scored.)

**Generic CSV** (:func:`load_csv`): a header row with ``subject,video,onset,apex,offset,
type`` (type ``macro`` or ``micro``, or ``MaE`` / ``ME``, any case) and optionally
``path,fps,stride``; a column named twice, or a row with more (non-empty) fields than
the header or too few to reach a required column, is refused. Frames are
already 0-based indices into the decoded sequence (what ``AnnotationTable.to_csv``
writes); an empty apex or -1 means (onset + offset) // 2. ``path`` is a video file or
frame folder, relative to the CSV's folder unless absolute; ``fps`` empty means the
container's rate (30.0 for a folder); ``stride`` empty means 1. A row with a ``path``
and empty frame columns declares a video without expressions. A video id names one
video of one subject: a video listed under two subjects is refused.

**Video locations.** Given ``root`` (the data set folder holding ``rawpic/`` or
``rawvideo/`` for CAS(ME)^2, ``SAMM_longvideos/`` for SAMM-LV), the xlsx loaders fill
``table.sources`` with every video found there, annotated or not, and warn about
annotated videos that are not found.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spotformer.data.table import (
    CSV_COLUMNS,
    CSV_SOURCE_COLUMNS,
    FRAME_LIMIT,
    AnnotationTable,
    DroppedRow,
    Expression,
    Kind,
    RepeatCheck,
    VideoRef,
    frame_too_large,
    parse_kind,
    read_csv_records,
)
from spotformer.errors import AnnotationError
from sw_mro.errors import one_line

log = logging.getLogger(__name__)

CAS_SHEET = "CASFEcode_final"
CAS_RULE1 = "naming rule1"
CAS_RULE2 = "naming rule2"
CAS_FPS = 30.0
SAMM_SHEET = "FACS_Movement_Only"
SAMM_FPS = 200.0
SAMM_SUBSAMPLE = 7
SAMM_COLUMNS = ("subject", "filename", "onset", "apex", "offset", "type")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".wmv", ".mpg", ".mpeg")

__all__ = [
    "CAS_FPS",
    "SAMM_FPS",
    "SAMM_SUBSAMPLE",
    "load_annotations",
    "load_casme2",
    "load_csv",
    "load_samm",
    "workbook_kind",
]


# --- shared helpers ---------------------------------------------------------------------


def _where(path: Path, sheet: str | None, row: int | None) -> str:
    out = str(path)
    if sheet is not None:
        out += f": sheet {sheet!r}"
    if row is not None:
        out += f" row {row}" if sheet is not None else f": line {row}"
    return out


def _fail(path: Path, sheet: str | None, row: int | None, msg: str) -> AnnotationError:
    return AnnotationError(f"{_where(path, sheet, row)}: {msg}")


def _read_sheets(
    xlsx: Path, names: Iterable[str], formulas: bool = False
) -> dict[str, list[tuple[Any, ...]]]:
    """All rows (values only, formulas evaluated as cached) of the named sheets; with
    ``formulas``, a formula cell gives its formula text (``=20+8``) instead."""
    import openpyxl  # local import: only the xlsx loaders need it

    if not xlsx.is_file():
        raise AnnotationError(f"{xlsx}: no such annotation file")
    try:
        wb = openpyxl.load_workbook(xlsx, read_only=True, data_only=not formulas)
    except Exception as exc:  # BadZipFile, InvalidFileException, KeyError, ...
        raise AnnotationError(f"{xlsx}: not a readable .xlsx file ({one_line(exc)})") from exc
    try:
        out = {}
        for name in names:
            # A sheet renamed only in case or spacing ("CASFEcode_final ", "Naming Rule1")
            # is the same sheet (found in a probe: refused, listing a name that looked
            # identical).
            alike = [s for s in wb.sheetnames if s.strip().casefold() == name.casefold()]
            if name not in wb.sheetnames and len(alike) != 1:
                # The other data set's workbook (found in review: --dataset samm on a
                # CAS(ME)^2 folder said only which sheets there were); not for a sheet of
                # the same data set's workbook (found in a probe).
                ours = {CAS_SHEET, CAS_RULE1, CAS_RULE2} if name != SAMM_SHEET else {SAMM_SHEET}
                other = {CAS_SHEET: "CAS(ME)^2 (--dataset casme2)",
                         SAMM_SHEET: "SAMM-LV (--dataset samm)"}  # fmt: skip
                hint = next(
                    (f"; it is {v}'s workbook" for k, v in other.items() if k in wb.sheetnames
                     and k not in ours),
                    "",
                )  # fmt: skip
                raise AnnotationError(
                    f"{xlsx}: no sheet {name!r} (sheets: {', '.join(map(repr, wb.sheetnames))})"
                    + hint
                )
            ws = wb[name if name in wb.sheetnames else alike[0]]
            # Read-only mode trusts the sheet's <dimension> record, which some writers
            # leave wrong (e.g. A1:A1); without this the rows after it were dropped.
            ws.reset_dimensions()
            out[name] = [tuple(r) for r in ws.iter_rows(values_only=True)]
        return out
    finally:
        wb.close()


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


class _Formulas:
    """The formulas of one sheet, read only when a cell the loader needs is blank.

    A workbook written by a program that does not compute formulas (openpyxl, pandas)
    stores a formula without its value, and reading values gives ``None``, like a blank
    cell. Telling the two apart needs a second read of the sheet, so it is done only on
    the first blank cell of a needed column (real annotation files have few or none).
    """

    def __init__(self, xlsx: Path, sheet: str) -> None:
        self.xlsx, self.sheet = xlsx, sheet
        self._rows: list[tuple[Any, ...]] | None = None

    def check_blank(self, row: int, col: int, label: str) -> None:
        """Raise when the blank-reading cell at ``row`` (1-based), ``col`` (0-based) holds
        a formula with no cached value."""
        from openpyxl.utils import get_column_letter

        if self._rows is None:
            self._rows = _read_sheets(self.xlsx, (self.sheet,), formulas=True)[self.sheet]
        cells = self._rows[row - 1] if 0 < row <= len(self._rows) else ()
        f = _cell(cells, col)
        text = getattr(f, "text", f)  # an array formula is an object with .text
        if isinstance(text, str) and text.startswith("="):
            column = get_column_letter(col + 1)
            raise _fail(
                self.xlsx, self.sheet, row,
                f"{label} (column {column}) is the formula {text!r} with no computed "
                "value saved in the file (written by a program that does not compute "
                "formulas); open and save the workbook in Excel or LibreOffice to compute it",
            )  # fmt: skip


def _frame_cells(
    row: tuple[Any, ...],
    r: int,
    columns: Sequence[tuple[int, str]],
    formulas: _Formulas,
) -> list[float | None]:
    """The onset/apex/offset cells of a workbook row as numbers (None when blank), each
    below :data:`FRAME_LIMIT` and none an uncomputed formula."""
    from openpyxl.utils import get_column_letter

    out = []
    for c, label in columns:
        v = _cell(row, c)
        x = _number(v, formulas.xlsx, formulas.sheet, r, label)
        if x is None:
            formulas.check_blank(r, c, label)
        elif x >= FRAME_LIMIT:
            where = f"{label} (column {get_column_letter(c + 1)})"
            raise _fail(formulas.xlsx, formulas.sheet, r, frame_too_large(where, v))
        out.append(x)
    return out


def _number(v: Any, path: Path, sheet: str | None, row: int, column: str) -> float | None:
    """A cell as a float (``None`` when blank). Numbers stored as text are accepted."""
    if _blank(v):
        return None
    if isinstance(v, bool):
        raise _fail(path, sheet, row, f"{column} must be a number, got {v!r}")
    if isinstance(v, int | float):
        x = float(v)
    else:
        try:
            x = float(str(v).strip())
        except ValueError:
            raise _fail(path, sheet, row, f"{column} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise _fail(path, sheet, row, f"{column} must be a finite number, got {v!r}")
    return x


def _fill_missing(
    onset: float | None, apex: float | None, offset: float | None, where: str
) -> tuple[float, float, float] | str:
    """SPEC.md section 1 missing-value rules on 1-based frames; a str is a drop reason.
    An apex outside ``[onset, offset]`` is moved to the nearer end, with a warning that
    names ``where`` (the file, sheet and row): the row is kept."""

    def missing(x: float | None) -> bool:
        return x is None or x < 1  # 1-based: blank, 0 and -1 (SAMM's apex) mean missing

    n_missing = sum(missing(x) for x in (onset, apex, offset))
    shown = f"onset={_fmt(onset)}, apex={_fmt(apex)}, offset={_fmt(offset)}"
    if n_missing >= 2:
        return f"two or more of onset/apex/offset missing ({shown})"
    if missing(onset):
        # Kept (found in review): SAMM-LV has such rows (12 macro-expressions, an
        # onset of 0 or -1 with the apex hundreds of frames on), and its published
        # counts (343 MaE) include them. The expression is taken as under way when the
        # recording starts, as in the SpotFormer authors' SAMM-LV table (start frame 0).
        log.warning(
            "%s: onset missing (%s): kept, with the onset at the video's first frame "
            "(the MEGC protocol counts every row by its onset and offset)",
            where, shown,
        )  # fmt: skip
        onset = 1.0
    assert onset is not None  # for the type checker; missing() covered None
    if missing(offset):
        offset = apex
    elif missing(apex):
        apex = (onset + offset) // 2
    assert apex is not None and offset is not None
    if offset < onset:
        return f"need onset <= offset after filling ({shown})"
    if not onset <= apex <= offset:
        # Kept (found in review): the MEGC protocol scores every annotation row by its
        # onset-offset interval, which this row has; dropping it for its apex would
        # change the data set's counts of ground truths. The apex only places the
        # labels' apex target.
        moved = min(max(apex, onset), offset)
        log.warning(
            "%s: apex %s is outside onset %s - offset %s: kept, with the apex at %s "
            "(the MEGC protocol counts every row by its onset and offset)",
            where, _fmt(apex), _fmt(onset), _fmt(offset), _fmt(moved),
        )  # fmt: skip
        apex = moved
    return onset, apex, offset


def _fmt(x: float | None) -> str:
    if x is None:
        return "blank"
    return str(int(x)) if x == int(x) else str(x)


def _kind(v: Any, path: Path, sheet: str | None, row: int, column: str = "type") -> Kind:
    """The type as :func:`~spotformer.data.table.parse_kind` reads it (every reader
    accepts the same spellings), or an error naming the place."""
    kind = parse_kind(v)
    if kind is not None:
        return kind
    if _blank(v):
        raise _fail(
            path, sheet, row, f"the type ({column}) is empty (a short row?); need macro or micro"
        )
    raise _fail(path, sheet, row, f"type {v!r} is neither macro nor micro (nor MaE / ME)")


def _drop(table: AnnotationTable, source: str, row: int, reason: str) -> None:
    table.dropped.append(DroppedRow(source=source, row=row, reason=reason))
    log.warning("%s row %d dropped: %s", source, row, reason)


def _add(
    table: AnnotationTable,
    repeats: RepeatCheck,
    row: int,
    e: Expression,
    frames: tuple[float, float, float],
) -> None:
    """Append ``e``, with a warning when an earlier row has its video, type and onset and
    offset as the file gives them (``frames``: onset, apex, offset in the file's own
    numbers): the repeat is kept, as the MEGC protocol counts every annotation row."""
    onset, apex, offset = frames
    warning = repeats.check(row, e.video, onset, offset, e.kind, apex=apex)
    if warning is not None:
        log.warning("%s", warning)
    table.expressions.append(replace(e, where=f"{repeats.source} {repeats.unit} {row}"))


def _cell(row: tuple[Any, ...], i: int) -> Any:
    return row[i] if i < len(row) else None


# --- CAS(ME)^2 ---------------------------------------------------------------------------


def _code(v: Any) -> str | None:
    """Video code as 4 digits: 101 -> '0101', '0101' -> '0101'; None if not a code."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    text = str(v).strip()
    return text.zfill(4) if text.isdigit() else None


def _casme2_rules(
    xlsx: Path, rule1: list[tuple[Any, ...]], rule2: list[tuple[Any, ...]]
) -> tuple[dict[int, tuple[int, str]], dict[str, str]]:
    """subject index -> (subject number, folder) and video name -> 4-digit code."""
    subjects: dict[int, tuple[int, str]] = {}
    rows = [(r, row) for r, row in enumerate(rule1, start=1) if any(not _blank(c) for c in row)]
    # Column C on every row, or on none (found in a probe: an index stored as text made
    # the sheet row-aligned without a word, swapping subjects whose rows are not in
    # index order).
    given = [r for r, row in rows if not _blank(_cell(row, 2))]
    if given and len(given) < len(rows):
        blank = next(r for r, row in rows if _blank(_cell(row, 2)))
        raise _fail(
            xlsx, CAS_RULE1, blank,
            f"column C (subject index) is blank here but given on row {given[0]}; give it "
            "on every row, or on none (then row k is subject index k); if column C holds "
            "something else (notes), delete it",
        )  # fmt: skip
    index: dict[int, int] = {}  # row -> its subject index (column C given)
    if given:
        seen: dict[int, int] = {}
        for r, row in rows:
            x = _number(
                _cell(row, 2), xlsx, CAS_RULE1, r,
                "column C (the subject index of CASFEcode_final's column A; delete the "
                "column if it holds something else)",
            )  # fmt: skip
            if x is None or not x.is_integer():
                raise _fail(
                    xlsx, CAS_RULE1, r,
                    f"column C must be a whole subject index, got {_cell(row, 2)!r}",
                )  # fmt: skip
            c = index[r] = int(x)
            if c in seen:
                raise _fail(
                    xlsx, CAS_RULE1, r,
                    f"column C (subject index) {c} is also on row {seen[c]}; each subject "
                    "index must be listed once",
                )  # fmt: skip
            seen[c] = r
    for r, row in rows:
        number = _number(_cell(row, 0), xlsx, CAS_RULE1, r, "column A (subject number)")
        if number is None or not number.is_integer():
            raise _fail(xlsx, CAS_RULE1, r, f"column A must be a subject number, got {row[0]!r}")
        folder = _cell(row, 1)
        folder = f"s{int(number)}" if _blank(folder) else str(folder).strip()
        subjects[index.get(r, r)] = (int(number), folder)  # row-aligned without column C
    videos: dict[str, str] = {}
    named: dict[str, int] = {}  # name -> its row
    for r, row in enumerate(rule2, start=1):
        a, b = _cell(row, 0), _cell(row, 1)
        if _blank(a) and _blank(b):
            continue
        if _blank(b) and isinstance(a, str) and len(a.split()) == 2:  # "0101 disgust1"
            a, b = a.split()
        code = _code(a)
        if code is None or _blank(b):
            raise _fail(xlsx, CAS_RULE2, r, f"expected a video code and a name, got {a!r}, {b!r}")
        name = str(b).strip().lower()
        if videos.get(name, code) != code:  # found in a probe: the last one won, silently
            raise _fail(
                xlsx, CAS_RULE2, r,
                f"video name {b!r} is also on row {named[name]}, with code {videos[name]}; "
                "each name must have one code",
            )  # fmt: skip
        videos[name] = code
        named.setdefault(name, r)
    return subjects, videos


def casme2_video_id(subject_dir: str, name: str) -> str | None:
    """CAS(ME)^2's video id of ``rawpic/<subject_dir>/<name>`` (or ``rawvideo/``):
    ``s15/15_0101`` for ``s15`` / ``15_0101disgustingteeth``; None for another name."""
    m = _CAS_VIDEO_NAME.match(name)
    return None if m is None else f"{subject_dir}/{int(m.group(1))}_{m.group(2)}"


_CAS_VIDEO_NAME = re.compile(r"^(\d+)_(\d{4})")


def _casme2_sources(root: Path) -> dict[str, VideoRef]:
    """Every video under ``root/rawpic`` (frame folders) or ``root/rawvideo`` (files);
    rawpic's where both hold one. Two folders (or files) of one kind with the same id
    are an AnnotationError naming both (found in a probe: ``15_0101_old`` next to
    ``15_0101disgustingteeth`` took its place, silently, by sorting first)."""
    found: dict[str, VideoRef] = {}
    twins: list[str] = []
    for kind in ("rawpic", "rawvideo"):
        ours: dict[str, Path] = {}
        base = root / kind
        if not base.is_dir():
            continue
        for sdir in sorted(p for p in base.iterdir() if p.is_dir()):
            for item in sorted(sdir.iterdir()):
                video = casme2_video_id(sdir.name, item.name)
                is_frames = kind == "rawpic" and item.is_dir()
                is_file = kind == "rawvideo" and item.suffix.lower() in VIDEO_SUFFIXES
                if video is None or not (is_frames or is_file):
                    continue
                if video in ours:
                    twins.append(f"{video!r}: {ours[video]} and {item.name}")
                    continue
                ours[video] = item
                fps = CAS_FPS if is_frames else None
                found.setdefault(video, VideoRef(item, fps=fps, stride=1, subject=sdir.name))
    if twins:
        raise AnnotationError(
            f"{root}: {len(twins)} video id{'s' * (len(twins) > 1)} name{'s' * (len(twins) == 1)} "
            f"two videos: {'; '.join(twins[:8])}{' ...' if len(twins) > 8 else ''}. An id is "
            "the subject folder and the name's leading <subject>_<code> (CAS(ME)^2: "
            "s15/15_0101 for 15_0101disgustingteeth); move the other copy out of the data "
            "set's folders"
        )
    return found


def load_casme2(xlsx: str | os.PathLike, root: str | os.PathLike | None = None) -> AnnotationTable:
    """Load ``CAS(ME)^2code_final.xlsx``; see the module docstring for the format and IDs.

    Args:
        xlsx: the annotation workbook.
        root: optional CAS(ME)^2 folder holding ``rawpic/`` (or ``rawvideo/``); when
            given, ``table.sources`` maps every video found there to its frames.
    """
    xlsx = Path(xlsx)
    sheets = _read_sheets(xlsx, (CAS_SHEET, CAS_RULE1, CAS_RULE2))
    subjects, videos = _casme2_rules(xlsx, sheets[CAS_RULE1], sheets[CAS_RULE2])
    table = AnnotationTable()
    source = f"{xlsx} [{CAS_SHEET}]"
    formulas = _Formulas(xlsx, CAS_SHEET)
    repeats = RepeatCheck(source, "row")
    for r, row in enumerate(sheets[CAS_SHEET], start=1):
        if all(_blank(c) for c in row):
            continue
        index = _number(_cell(row, 0), xlsx, CAS_SHEET, r, "column A (subject)")
        if index is None:
            formulas.check_blank(r, 0, "the subject")
        if index is None or not index.is_integer() or int(index) not in subjects:
            raise _fail(
                xlsx, CAS_SHEET, r, f"subject {_cell(row, 0)!r} is not in sheet {CAS_RULE1!r}"
            )
        number, folder = subjects[int(index)]
        name = _cell(row, 1)
        if _blank(name):
            formulas.check_blank(r, 1, "the expression name")
            raise _fail(xlsx, CAS_SHEET, r, "column B (expression name) is empty")
        video_name = str(name).strip().split("_")[0].lower()
        if video_name not in videos:
            raise _fail(
                xlsx, CAS_SHEET, r, f"video {video_name!r} of {name!r} is not in {CAS_RULE2!r}"
            )
        frames = _frame_cells(row, r, ((2, "onset"), (3, "apex"), (4, "offset")), formulas)
        for x, label in zip(frames, ("onset", "apex", "offset"), strict=True):
            if x is not None and not x.is_integer():
                raise _fail(xlsx, CAS_SHEET, r, f"{label} must be a whole frame number, got {x}")
        if _blank(_cell(row, 7)):
            formulas.check_blank(r, 7, "the type")
        kind = _kind(_cell(row, 7), xlsx, CAS_SHEET, r, "column H")
        filled = _fill_missing(*frames, where=f"{source} row {r}")
        if isinstance(filled, str):
            _drop(table, source, r, filled)
            continue
        onset, apex, offset = (int(x) - 1 for x in filled)  # img1.jpg is index 0
        video = f"{folder}/{number}_{videos[video_name]}"
        e = Expression(folder, video, onset, apex, offset, kind)
        _add(table, repeats, r, e, filled)  # compared in the file's 1-based frames
    if root is not None:
        table.sources = _check_sources(Path(root), _casme2_sources(Path(root)), table, "rawpic/")
    return table


# --- SAMM-LV -----------------------------------------------------------------------------


def _samm_header(xlsx: Path, rows: list[tuple[Any, ...]]) -> tuple[int, dict[str, int]]:
    """(index of the header row in ``rows``, column name -> column index)."""
    for i, row in enumerate(rows[:30]):
        names = [" ".join(str(c).lower().split()) if not _blank(c) else "" for c in row]
        cols: dict[str, int] = {}
        for want in SAMM_COLUMNS:
            for j, name in enumerate(names):
                if name == want or name.startswith(want + " "):  # "Onset Frame" is Onset
                    cols.setdefault(want, j)
                    break
        if len(cols) == len(SAMM_COLUMNS):
            return i, cols
    raise AnnotationError(
        f"{xlsx}: sheet {SAMM_SHEET!r}: no header row with columns "
        f"{', '.join(c.title() for c in SAMM_COLUMNS)} in the first 30 rows (expected on row 10)"
    )


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)  # not round(): Python rounds halves to even


def _samm_sources(root: Path, subsample: int) -> dict[str, VideoRef]:
    base = root / "SAMM_longvideos"
    if not base.is_dir():  # its name in any case (found in a probe: the workbook's
        named = [  # "SAMM_LongVideos" spelling gave "no videos found"), else root itself
            p for p in (root.iterdir() if root.is_dir() else ()) if p.is_dir()
            and p.name.casefold() == base.name.casefold()
        ]  # fmt: skip
        base = named[0] if len(named) == 1 else root
    found: dict[str, VideoRef] = {}
    if base.is_dir():
        for item in sorted(base.iterdir()):
            if item.is_dir() and re.fullmatch(r"\d+_\d+", item.name):
                subject = item.name.split("_")[0]
                found[item.name] = VideoRef(item, fps=SAMM_FPS, stride=subsample, subject=subject)
    return found


def load_samm(
    xlsx: str | os.PathLike,
    root: str | os.PathLike | None = None,
    subsample: int = SAMM_SUBSAMPLE,
) -> AnnotationTable:
    """Load ``SAMM_LongVideos_V*_Release.xlsx``; see the module docstring.

    Args:
        xlsx: the annotation workbook.
        root: optional folder holding ``SAMM_longvideos/`` (or that folder itself);
            when given, ``table.sources`` maps every video found there to its frames,
            with ``fps=200`` and ``stride=subsample``.
        subsample: the stride the frames are converted to (7: the paper's ~28.6 fps;
            1 keeps 200 fps and only makes the frames 0-based).
    """
    xlsx = Path(xlsx)
    if isinstance(subsample, bool) or not isinstance(subsample, int) or subsample < 1:
        raise ValueError(f"{xlsx}: subsample must be an int >= 1, got {subsample!r}")
    rows = _read_sheets(xlsx, (SAMM_SHEET,))[SAMM_SHEET]
    header, col = _samm_header(xlsx, rows)
    table = AnnotationTable()
    source = f"{xlsx} [{SAMM_SHEET}]"
    formulas = _Formulas(xlsx, SAMM_SHEET)
    repeats = RepeatCheck(source, "row")
    disagree: list[str] = []  # rows whose Subject is not the Filename's (found in a probe)
    for i in range(header + 1, len(rows)):
        row, r = rows[i], i + 1
        if all(_blank(c) for c in row):
            continue
        name = _cell(row, col["filename"])
        if _blank(name):
            formulas.check_blank(r, col["filename"], "Filename")
        m = re.fullmatch(r"(\d+)_(\d+)_(\w+)", "" if _blank(name) else str(name).strip())
        if m is None:
            raise _fail(xlsx, SAMM_SHEET, r, f"Filename {name!r} is not like '006_1_1'")
        subject, video = m.group(1), f"{m.group(1)}_{m.group(2)}"
        given = _cell(row, col["subject"])
        if not _blank(given) and str(given).strip().lstrip("0").removesuffix(".0") != (
            subject.lstrip("0")
        ):
            disagree.append(f"row {r}: Subject {given!r}, Filename {str(name).strip()!r}")
        frames = _frame_cells(row, r, [(col[c], c.title()) for c in SAMM_COLUMNS[2:5]], formulas)
        if _blank(_cell(row, col["type"])):
            formulas.check_blank(r, col["type"], "Type")
        kind = _kind(_cell(row, col["type"]), xlsx, SAMM_SHEET, r, "column Type")
        filled = _fill_missing(*frames, where=f"{source} row {r}")
        if isinstance(filled, str):
            _drop(table, source, r, filled)
            continue
        f_on, f_apex, f_off = filled
        onset = _round_half_up((f_on - 1) / subsample)
        offset = _round_half_up((f_off - 1) / subsample)
        apex = min(max(math.floor((f_apex - 1) / subsample), onset), offset)
        e = Expression(subject, video, onset, apex, offset, kind)
        _add(table, repeats, r, e, filled)  # compared in source frames
    if disagree:
        more = f" and {len(disagree) - 4} more" if len(disagree) > 4 else ""
        log.warning(
            "%s: the Subject column disagrees with the Filename on %d row(s) (%s%s); the "
            "Filename's subject is used (its frames folder is named by it)",
            source, len(disagree), "; ".join(disagree[:4]), more,
        )  # fmt: skip
    if root is not None:
        sources = _samm_sources(Path(root), subsample)
        table.sources = _check_sources(Path(root), sources, table, "SAMM_longvideos/")
    return table


def _check_sources(
    root: Path, sources: dict[str, VideoRef], table: AnnotationTable, expected: str
) -> dict[str, VideoRef]:
    if not root.is_dir():
        raise AnnotationError(f"{root}: data root not found (expected a folder with {expected})")
    if not sources:
        raise AnnotationError(f"{root}: no videos found (expected them under {expected})")
    for video in table.videos:
        if video not in sources:
            log.warning("%s: no frames found for annotated video %s", root, video)
    return sources


# --- generic CSV -------------------------------------------------------------------------


def _int_cell(text: str, path: Path, line: int, column: str) -> int:
    try:
        x = float(text)
    except ValueError:
        raise _fail(path, None, line, f"{column} must be an integer, got {text!r}") from None
    if not (math.isfinite(x) and x.is_integer()):
        raise _fail(path, None, line, f"{column} must be an integer, got {text!r}")
    if x >= FRAME_LIMIT:
        raise _fail(path, None, line, frame_too_large(column, text))
    return int(x)


def load_csv(path: str | os.PathLike) -> AnnotationTable:
    """Load the generic CSV (see the module docstring); the inverse of ``to_csv``.

    Its checks are :func:`spotformer.data.table.read_csv_records`' (shared with
    ``read_intervals``); a row repeating an earlier expression (same video, onset,
    offset and type) is kept and reported with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: no such annotation file")
    table = AnnotationTable()
    repeats = RepeatCheck(str(path), "line")
    source_lines: dict[str, int] = {}  # the line that gave each video its path
    records = read_csv_records(
        path,
        CSV_COLUMNS,
        CSV_SOURCE_COLUMNS,
        AnnotationError,
        "give the annotation CSV (a data set's .xlsx workbook is read by load_casme2 or "
        "load_samm: train --dataset casme2 or samm)",
    )
    owner: dict[str, tuple[str, int]] = {}  # video -> (subject, its first line)
    for line, get in records:
        video = get["video"]
        if not video:
            raise _fail(path, None, line, "video is empty")
        if get["subject"]:  # found in review: a second subject's rows joined the first's
            first = owner.setdefault(video, (get["subject"], line))
            if first[0] != get["subject"]:
                raise _fail(
                    path,
                    None,
                    line,
                    f"video {video!r} is listed under subject {get['subject']!r} here and "
                    f"{first[0]!r} on line {first[1]}; a video id names one video of one "
                    f"subject, so make the ids unique across subjects "
                    f"(e.g. {get['subject'] + '_' + video!r})",
                )
        if get.get("path"):
            _add_csv_source(table, path, line, video, get, source_lines)
        if not any(get[c] for c in ("onset", "apex", "offset", "type")):
            if not get.get("path"):
                raise _fail(path, None, line, "no frames and no path")
            continue  # a video without expressions
        if not get["subject"]:
            raise _fail(path, None, line, "subject is empty")
        onset = _int_cell(get["onset"], path, line, "onset")
        offset = _int_cell(get["offset"], path, line, "offset")
        apex = _int_cell(get["apex"], path, line, "apex") if get["apex"] else -1
        if apex == -1:
            apex = (onset + offset) // 2
        if not 0 <= onset <= apex <= offset:
            raise _fail(
                path,
                None,
                line,
                f"need 0 <= onset <= apex <= offset, got {onset}, {apex}, {offset}",
            )
        kind = _kind(get["type"], path, None, line, "column type")
        e = Expression(get["subject"], video, onset, apex, offset, kind)
        _add(table, repeats, line, e, (onset, apex, offset))
    return table


def _add_csv_source(
    table: AnnotationTable,
    path: Path,
    line: int,
    video: str,
    get: dict[str, str],
    source_lines: dict[str, int],
) -> None:
    video_path = Path(get["path"])
    if not video_path.is_absolute():
        # normpath: "../videos/a.mp4" written by to_csv comes back as a clean path
        video_path = Path(os.path.normpath(path.parent / video_path))
    fps = None
    if get.get("fps"):
        try:
            fps = float(get["fps"])
        except ValueError:
            raise _fail(path, None, line, f"fps must be a number, got {get['fps']!r}") from None
        if not (math.isfinite(fps) and fps > 0):
            raise _fail(path, None, line, f"fps must be positive, got {get['fps']!r}")
    stride = _int_cell(get["stride"], path, line, "stride") if get.get("stride") else 1
    if stride < 1:
        raise _fail(path, None, line, f"stride must be >= 1, got {stride}")
    ref = VideoRef(video_path, fps=fps, stride=stride, subject=get.get("subject") or None)
    old = table.sources.get(video)
    if old is not None and (old.path, old.fps, old.stride) != (ref.path, ref.fps, ref.stride):
        pairs = zip(
            ("path", "fps", "stride"),
            (ref.path, ref.fps, ref.stride),
            (old.path, old.fps, old.stride),
            strict=True,
        )
        differ = [(k, a, b) for k, a, b in pairs if a != b]

        def said(k: str, v: object) -> str:  # not "fps None" (found in a probe)
            return "an empty fps (the video's own rate)" if v is None else f"{k} {v}"

        here, there = [said(k, a) for k, a, _ in differ], [said(k, b) for k, _, b in differ]
        raise _fail(  # found in review: the other line was not named
            path,
            None,
            line,
            f"video {video!r} has {', '.join(here)} here but {', '.join(there)} on line "
            f"{source_lines.get(video, '?')}; give one path, fps and stride per video (on "
            "every row that has its path)",
        )
    source_lines.setdefault(video, line)
    if old is None or old.subject is None:
        table.sources[video] = ref


# --- dispatch ----------------------------------------------------------------------------


def load_annotations(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    subsample: int = SAMM_SUBSAMPLE,
) -> AnnotationTable:
    """Load any supported file: ``.csv`` -> :func:`load_csv`; an ``.xlsx`` with sheet
    ``CASFEcode_final`` -> :func:`load_casme2`, with ``FACS_Movement_Only`` ->
    :func:`load_samm`."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_csv(path)
    if workbook_kind(path) == "casme2":
        return load_casme2(path, root=root)
    return load_samm(path, root=root, subsample=subsample)


WORKBOOK_SUFFIXES = (".xlsx", ".xlsm")


def is_workbook(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an Excel workbook (by its suffix, any case)."""
    return Path(path).suffix.lower() in WORKBOOK_SUFFIXES


def workbook_kind(path: str | os.PathLike) -> str:
    """``"casme2"`` or ``"samm"``: which data set's annotation workbook ``path`` is (by
    its sheets).

    Raises:
        AnnotationError: not an ``.xlsx``, missing, unreadable, or neither workbook.
    """
    path = Path(path)
    if not is_workbook(path):
        raise AnnotationError(f"{path}: unknown annotation format (expected .csv or .xlsx)")
    import openpyxl

    if not path.is_file():
        raise AnnotationError(f"{path}: no such annotation file")
    try:
        wb = openpyxl.load_workbook(path, read_only=True)
        names = list(wb.sheetnames)
        wb.close()
    except Exception as exc:
        raise AnnotationError(f"{path}: not a readable .xlsx file ({one_line(exc)})") from exc
    folded = {n.strip().casefold() for n in names}  # as _read_sheets matches them
    if CAS_SHEET.casefold() in folded:
        return "casme2"
    if SAMM_SHEET.casefold() in folded:
        return "samm"
    raise AnnotationError(
        f"{path}: neither CAS(ME)^2 (sheet {CAS_SHEET!r}) nor SAMM-LV (sheet {SAMM_SHEET!r}); "
        f"its sheets: {', '.join(map(repr, names))}"
    )
