"""Annotation loaders on small files written here in the real formats (SPEC.md section 1).

The xlsx files are written with openpyxl exactly as the data sets ship them: CAS(ME)^2
with no header and its two naming-rule sheets, SAMM-LV with 9 preamble rows and the
header on row 10. Expected rows follow from the SPEC's rules, worked by hand in the
comments.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pytest

from spotformer.data import (
    AnnotationTable,
    Expression,
    VideoRef,
    load_annotations,
    load_casme2,
    load_csv,
    load_samm,
)
from spotformer.errors import AnnotationError, SpotFormerError
from spotformer.metrics import read_ground_truth, read_intervals

# --- CAS(ME)^2 ---------------------------------------------------------------------------

# naming rule1 with a column C (the subject index of CASFEcode_final column A), listed
# out of order so that a reader which ignored C would map index 1 to s16.
RULE1_WITH_C = [[16, "s16", 2], [15, "s15", 1]]
RULE1_ROW_ALIGNED = [[15, "s15"], [16, "s16"]]
RULE2 = [["0101", "disgust1"], [102, "disgust2"], ["0401", "anger1"], ["0502", "happy1"]]
AU, EMO = "R12+L14", "negative"
CAS_ROWS: list[list[Any]] = [
    [1, "disgust1_1", 557, 572, 608, AU, EMO, "macro-expression", "disgust"],  # row 1
    [1, "disgust1_2", 1000, 1010, 0, AU, EMO, "micro-expression", "disgust"],  # offset 0
    [2, "disgust2_1", 201, 0, 230, AU, EMO, "macro-expression", "disgust"],  # apex 0
    [2, "anger1_1", 300, -1, 311, AU, EMO, "micro-expression", "anger"],  # apex -1
    [2, "happy1_2", 400, 0, 0, AU, EMO, "macro-expression", "happy"],  # two zeros
    [1, "anger1_3", 0, 0, 0, AU, EMO, "macro-expression", ""],  # three zeros
    [None] * 9,  # a blank row inside the sheet
    [1, "happy1_1", 50, 70, 60, AU, EMO, "Macro-Expression ", "happy"],  # apex > offset
    [2, "Happy1_4", 90, 95, 99, AU, EMO, "macro-expression", "happy"],  # case, spaces
]
CAS_EXPECTED = [
    # 1-based -> 0-based: subtract 1.
    Expression("s15", "s15/15_0101", 556, 571, 607, "macro"),
    # offset 0 -> offset = apex = 1010.
    Expression("s15", "s15/15_0101", 999, 1009, 1009, "micro"),
    # apex 0 -> (201 + 230) // 2 = 215; code 102 written as a number -> "0102".
    Expression("s16", "s16/16_0102", 200, 214, 229, "macro"),
    # apex -1 -> (300 + 311) // 2 = 305.
    Expression("s16", "s16/16_0401", 299, 304, 310, "micro"),
    # apex 70 past offset 60: kept (MEGC counts every row), apex moved to the offset.
    Expression("s15", "s15/15_0502", 49, 59, 59, "macro"),
    Expression("s16", "s16/16_0502", 89, 94, 98, "macro"),
]


def write_casme2(
    path: Path,
    rows: list[list[Any]] = CAS_ROWS,
    rule1: list[list[Any]] = RULE1_WITH_C,
    rule2: list[list[Any]] = RULE2,
    sheets: tuple[str, ...] = ("CASFEcode_final", "naming rule1", "naming rule2"),
) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    # The sheets in order, named as given (renamed ones too).
    for name, content in zip(sheets, (rows, rule1, rule2), strict=False):
        ws = wb.create_sheet(name)
        for row in content:
            ws.append(row)
    wb.save(path)
    return path


@pytest.fixture()
def cas_xlsx(tmp_path: Path) -> Path:
    return write_casme2(tmp_path / "CAS(ME)^2code_final.xlsx")


def test_casme2_rows(cas_xlsx: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_casme2(cas_xlsx)
    assert table.expressions == CAS_EXPECTED
    assert [(d.row, d.reason.split(" (")[0]) for d in table.dropped] == [
        (5, "two or more of onset/apex/offset missing"),
        (6, "two or more of onset/apex/offset missing"),
    ]
    assert all("CASFEcode_final" in d.source and cas_xlsx.name in d.source for d in table.dropped)
    assert "onset=400, apex=0, offset=0" in table.dropped[0].reason
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3 and "row 5 dropped" in warned[0]
    assert warned[2] == (
        f"{cas_xlsx} [CASFEcode_final] row 8: apex 70 is outside onset 50 - offset 60: "
        "kept, with the apex at 60 (the MEGC protocol counts every row by its onset and "
        "offset)"
    )
    assert table.subjects == ["s15", "s16"]
    assert table.sources == {}


def test_casme2_row_aligned_naming_rule1(tmp_path: Path) -> None:
    xlsx = write_casme2(tmp_path / "a.xlsx", rule1=RULE1_ROW_ALIGNED)
    assert load_casme2(xlsx).expressions == CAS_EXPECTED


def _set_dimension(xlsx: Path, ref: str) -> None:
    """Rewrite every sheet's ``<dimension>`` record (how many cells are in use) to ``ref``,
    as some non-Excel writers leave it."""
    import re
    import zipfile

    tmp = xlsx.with_suffix(".tmp")
    with zipfile.ZipFile(xlsx) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data, n = re.subn(
                    rb'<dimension ref="[^"]*"', f'<dimension ref="{ref}"'.encode(), data
                )
                assert n == 1
            dst.writestr(item, data)
    tmp.replace(xlsx)


def test_xlsx_with_a_wrong_dimension_record_is_read_whole(tmp_path: Path) -> None:
    """openpyxl's read-only mode trusts the sheet's dimension record; a wrong one (A1:A1)
    silently kept only the first row of CAS(ME)^2 and hid SAMM-LV's header."""
    cas = write_casme2(tmp_path / "cas.xlsx")
    _set_dimension(cas, "A1:A1")
    assert openpyxl.load_workbook(cas, read_only=True)["CASFEcode_final"].max_row == 1
    assert load_casme2(cas).expressions == CAS_EXPECTED
    samm = write_samm(tmp_path / "samm.xlsx")
    _set_dimension(samm, "A1:A1")
    assert load_samm(samm).expressions == load_samm(write_samm(tmp_path / "ok.xlsx")).expressions


def test_casme2_duplicate_subject_index_in_naming_rule1(tmp_path: Path) -> None:
    """Column C of naming rule1 maps the main sheet's subject index to a folder; a repeated
    index would silently send one subject's rows to another."""
    xlsx = write_casme2(tmp_path / "a.xlsx", rule1=[[15, "s15", 1], [16, "s16", 1]])
    with pytest.raises(AnnotationError, match=r"naming rule1.*row 2.*index\) 1 is also on row 1"):
        load_casme2(xlsx)


def test_casme2_naming_rule1_column_c_as_text_or_partly_given(tmp_path: Path) -> None:
    """Found in a probe: an index stored as text made the sheet row-aligned without a
    word, so RULE1_WITH_C's out-of-order rows swapped the two subjects."""
    as_text = [[16, "s16", "2"], [15, "s15", " 1 "]]
    assert load_casme2(write_casme2(tmp_path / "t.xlsx", rule1=as_text)).expressions == (
        CAS_EXPECTED
    )
    one_text = [[16, "s16", 2], [15, "s15", "1"]]
    assert load_casme2(write_casme2(tmp_path / "o.xlsx", rule1=one_text)).expressions == (
        CAS_EXPECTED
    )
    partly = write_casme2(tmp_path / "p.xlsx", rule1=[[16, "s16", 2], [15, "s15"]])
    with pytest.raises(
        AnnotationError,
        match=r"naming rule1'? row 2: column C \(subject index\) is blank here but given on row 1",
    ):
        load_casme2(partly)
    for bad in ("two", 1.5, True):
        xlsx = write_casme2(tmp_path / "b.xlsx", rule1=[[16, "s16", 2], [15, "s15", bad]])
        with pytest.raises(AnnotationError, match=r"naming rule1'? row 2: column C"):
            load_casme2(xlsx)


def test_casme2_naming_rule2_name_given_two_codes(tmp_path: Path) -> None:
    """Found in a probe: a name listed twice took its last code, silently moving every
    row of it to another video. The same pair twice is harmless and kept."""
    twice = write_casme2(tmp_path / "a.xlsx", rule2=[*RULE2, ["0101", "Disgust1 "]])
    assert load_casme2(twice).expressions == CAS_EXPECTED
    clash = write_casme2(tmp_path / "b.xlsx", rule2=[*RULE2[:3], ["0102", "disgust1"], RULE2[3]])
    with pytest.raises(
        AnnotationError,
        match=r"naming rule2'? row 4: video name 'disgust1' is also on row 1, with code 0101",
    ):
        load_casme2(clash)


def test_casme2_sheets_renamed_in_case_or_spacing(tmp_path: Path) -> None:
    """Found in a probe: "CASFEcode_final " (a trailing space) and "Naming Rule1" were
    refused, listing names that looked identical; a renamed "naming rule2" was said to
    be "CAS(ME)^2 (--dataset casme2)'s workbook", the data set already given."""
    sheets = ("CASFEcode_final ", "Naming Rule1", "NAMING RULE2")
    assert load_casme2(write_casme2(tmp_path / "a.xlsx", sheets=sheets)).expressions == (
        CAS_EXPECTED
    )
    xlsx = write_casme2(tmp_path / "b.xlsx", sheets=("CASFEcode_final", "naming rule1", "x"))
    with pytest.raises(AnnotationError) as err:
        load_casme2(xlsx)
    assert str(err.value) == (
        f"{xlsx}: no sheet 'naming rule2' (sheets: 'CASFEcode_final', 'naming rule1', 'x')"
    )


def test_casme2_code_and_name_in_one_cell(tmp_path: Path) -> None:
    rule2 = [["0101 disgust1"], ["0102 disgust2"], ["0401 anger1"], ["0502 happy1"]]
    xlsx = write_casme2(tmp_path / "a.xlsx", rule2=rule2)
    assert load_casme2(xlsx).expressions == CAS_EXPECTED


def _make_cas_root(root: Path) -> None:
    (root / "rawpic" / "s15" / "15_0101disgustingteeth").mkdir(parents=True)
    (root / "rawpic" / "s15" / "15_0502happy").mkdir(parents=True)  # not annotated
    (root / "rawpic" / "s16" / "16_0401girlcrashing").mkdir(parents=True)
    (root / "rawpic" / "s16" / "notes.txt").write_text("not a video")
    (root / "rawvideo" / "s16").mkdir(parents=True)
    (root / "rawvideo" / "s16" / "16_0102eatingworms.avi").write_bytes(b"")
    # s16/16_0502 is annotated but absent: a warning, not an error.


def test_casme2_sources_from_root(
    cas_xlsx: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "CASME2"
    _make_cas_root(root)
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_casme2(cas_xlsx, root=root)
    raw = root / "rawpic"
    assert table.sources == {
        "s15/15_0101": VideoRef(raw / "s15" / "15_0101disgustingteeth", 30.0, 1, "s15"),
        "s15/15_0502": VideoRef(raw / "s15" / "15_0502happy", 30.0, 1, "s15"),
        "s16/16_0401": VideoRef(raw / "s16" / "16_0401girlcrashing", 30.0, 1, "s16"),
        "s16/16_0102": VideoRef(
            root / "rawvideo" / "s16" / "16_0102eatingworms.avi", None, 1, "s16"
        ),
    }
    assert any("s16/16_0502" in r.getMessage() for r in caplog.records)
    with pytest.raises(AnnotationError, match="data root not found"):
        load_casme2(cas_xlsx, root=tmp_path / "nowhere")
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(AnnotationError, match="no videos found"):
        load_casme2(cas_xlsx, root=tmp_path / "empty_root")
    # A second folder with the same id (found in a probe: "15_0101_old" sorts before
    # "15_0101disgustingteeth" and took its place, silently): refused, naming both. One
    # in rawpic and one in rawvideo is the data set's own layout (rawpic's is used).
    (root / "rawvideo" / "s16" / "16_0401girlcrashing.avi").write_bytes(b"")
    assert load_casme2(cas_xlsx, root=root).sources["s16/16_0401"].path.parent == raw / "s16"
    (raw / "s15" / "15_0101_old").mkdir()
    with pytest.raises(AnnotationError) as err:
        load_casme2(cas_xlsx, root=root)
    assert str(err.value).startswith(
        f"{root}: 1 video id names two videos: 's15/15_0101': {raw / 's15' / '15_0101_old'} "
        "and 15_0101disgustingteeth. An id is the subject folder"
    ), err.value


def test_casme2_source_opens_with_the_table_convention(
    cas_xlsx: Path, tmp_path: Path, astronaut_rgb: np.ndarray
) -> None:
    """img1.jpg is index 0 of open_video(ref.path): the table's onset 556 is img557."""
    import cv2

    from sw_mro.io import open_video

    folder = tmp_path / "root" / "rawpic" / "s15" / "15_0101disgustingteeth"
    folder.mkdir(parents=True)
    small = cv2.resize(astronaut_rgb, (32, 32))
    for k in (1, 2, 3):
        cv2.imwrite(str(folder / f"img{k}.png"), np.roll(small, 5 * k, axis=1)[:, :, ::-1])
    ref = load_casme2(cas_xlsx, root=tmp_path / "root").sources["s15/15_0101"]
    video = open_video(ref.path, stride=ref.stride, fps=ref.fps)
    assert video.info.fps == 30.0 and len(video) == 3
    np.testing.assert_array_equal(video.read([0]).numpy()[0], np.roll(small, 5, axis=1))


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda rows: rows.__setitem__(
                2, [9, "disgust2_1", 1, 2, 3, "", "", "macro-expression"]
            ),
            r"sheet 'CASFEcode_final' row 3: subject 9 is not in sheet 'naming rule1'",
        ),
        (
            lambda rows: rows.__setitem__(1, [1, "sad1_1", 1, 2, 3, "", "", "macro-expression"]),
            r"row 2: video 'sad1' of 'sad1_1' is not in 'naming rule2'",
        ),
        (
            lambda rows: rows.__setitem__(
                3, [2, "anger1_1", "abc", 2, 3, "", "", "macro-expression"]
            ),
            r"row 4: onset must be a number, got 'abc'",
        ),
        (
            lambda rows: rows.__setitem__(0, [1, "disgust1_1", 1, 2, 3, "", "", "nano-expression"]),
            r"row 1: type 'nano-expression' is neither macro nor micro",
        ),
        (  # a short row: columns A-D only (found in review: reported as "type None")
            lambda rows: rows.__setitem__(0, [1, "disgust1_1", 1, 2]),
            r"row 1: the type \(column H\) is empty \(a short row\?\); need macro or micro",
        ),
        (
            lambda rows: rows.__setitem__(
                0, [1, "disgust1_1", 1, 2.5, 3, "", "", "micro-expression"]
            ),
            r"row 1: apex must be a whole frame number, got 2.5",
        ),
        (
            lambda rows: rows.__setitem__(0, [1, None, 1, 2, 3, "", "", "micro-expression"]),
            r"row 1: column B \(expression name\) is empty",
        ),
    ],
)
def test_casme2_malformed_rows(tmp_path: Path, edit, match: str) -> None:
    rows = [list(r) for r in CAS_ROWS]
    edit(rows)
    xlsx = write_casme2(tmp_path / "bad.xlsx", rows=rows)
    with pytest.raises(AnnotationError, match=match) as err:
        load_casme2(xlsx)
    assert str(err.value).startswith(str(xlsx)) and "\n" not in str(err.value)


def test_casme2_malformed_files(tmp_path: Path) -> None:
    xlsx = write_casme2(tmp_path / "two_sheets.xlsx", sheets=("CASFEcode_final", "naming rule1"))
    with pytest.raises(AnnotationError, match=r"two_sheets.xlsx: no sheet 'naming rule2'"):
        load_casme2(xlsx)
    bad_rule2 = write_casme2(tmp_path / "r2.xlsx", rule2=[["code", "name"]] + RULE2)
    with pytest.raises(AnnotationError, match=r"sheet 'naming rule2' row 1"):
        load_casme2(bad_rule2)
    bad_rule1 = write_casme2(tmp_path / "r1.xlsx", rule1=[["x", "s15"]])
    with pytest.raises(AnnotationError, match=r"sheet 'naming rule1' row 1"):
        load_casme2(bad_rule1)
    garbage = tmp_path / "garbage.xlsx"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(AnnotationError, match=r"garbage.xlsx: not a readable .xlsx file"):
        load_casme2(garbage)
    with pytest.raises(AnnotationError, match=r"missing.xlsx: no such annotation file"):
        load_casme2(tmp_path / "missing.xlsx")


# --- SAMM-LV -----------------------------------------------------------------------------

SAMM_HEADER = [
    "Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset", "Duration", "Type",
    "Action Units", "Notes",
]  # fmt: skip
SAMM_PREAMBLE: list[list[Any]] = [
    ["SAMM Long Videos - FACS coding"],
    ["Release V2"],
    [],
    ["Onset, Apex and Offset are frame numbers at 200 fps"],
    [],
    ["Type: Macro or Micro - 1/2"],
    [],
    [],
    ["Coder: anonymised"],
]  # 9 preamble rows, so the header lands on row 10


def _samm_row(subject: int, name: str, on: Any, ap: Any, off: Any, kind: str) -> list[Any]:
    return [subject, name, 1, on, ap, off, None, kind, "R12", ""]


SAMM_ROWS = [
    _samm_row(6, "006_1_1", 566, 648, 743, "Macro"),  # row 11
    _samm_row(6, "006_1_2", 1200.5, -1, 1260, "Micro - 1/2"),  # fractional, apex -1
    _samm_row(7, "007_3_1", 100, 104.2, 0, "Micro - 1/2"),  # offset 0
    _samm_row(7, "007_3_2", 300, 0, 0, "Macro"),  # two zeros: dropped
    _samm_row(7, "007_3_3", 104, 104, 120, "Macro"),  # rounding pushes onset past apex
    _samm_row(7, "007_3_4", 4.5, 8, 15, "Micro - 1/2"),  # a half: rounds up
    _samm_row(7, "007_5_1", 700, 0, 713, "Macro"),  # apex 0
    _samm_row(11, "011_2_1", 500, 510, 490, "Macro"),  # offset < onset: dropped
]
SAMM_EXPECTED_7 = [
    # (566-1)/7 = 80.71 -> 81; floor((648-1)/7 = 92.43) = 92; (743-1)/7 = 106.
    Expression("006", "006_1", 81, 92, 106, "macro"),
    # apex = (1200.5 + 1260) // 2 = 1230; 1199.5/7 = 171.36 -> 171; floor(1229/7) = 175;
    # 1259/7 = 179.86 -> 180.
    Expression("006", "006_1", 171, 175, 180, "micro"),
    # offset = apex = 104.2; 99/7 = 14.14 -> 14; floor(103.2/7 = 14.74) = 14; 14.74 -> 15.
    Expression("007", "007_3", 14, 14, 15, "micro"),
    # 103/7 = 14.71 -> 15, floor -> 14, clamped to 15; 119/7 = 17.
    Expression("007", "007_3", 15, 15, 17, "macro"),
    # 3.5/7 = 0.5 -> 1 (half up; Python's round() would give 0); 7/7 = 1; 14/7 = 2.
    Expression("007", "007_3", 1, 1, 2, "micro"),
    # apex = (700 + 713) // 2 = 706; 699/7 = 99.86 -> 100; floor(705/7) = 100; 712/7 -> 102.
    Expression("007", "007_5", 100, 100, 102, "macro"),
]


def write_samm(
    path: Path, rows: list[list[Any]] = SAMM_ROWS, preamble: list[list[Any]] = SAMM_PREAMBLE
) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "FACS_Movement_Only"
    for row in [*preamble, SAMM_HEADER, *rows]:
        ws.append(row)
    wb.create_sheet("Notes").append(["a second sheet, as in the release"])
    wb.save(path)
    return path


@pytest.fixture()
def samm_xlsx(tmp_path: Path) -> Path:
    return write_samm(tmp_path / "SAMM_LongVideos_V2_Release.xlsx")


def test_samm_header_is_on_row_10(samm_xlsx: Path) -> None:
    ws = openpyxl.load_workbook(samm_xlsx)["FACS_Movement_Only"]
    assert ws["A10"].value == "Subject" and ws["B11"].value == "006_1_1"


def test_samm_rows_subsample_7(samm_xlsx: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_samm(samm_xlsx)
    assert table.expressions == SAMM_EXPECTED_7
    assert [(d.row, d.reason.split(" (")[0]) for d in table.dropped] == [
        (14, "two or more of onset/apex/offset missing"),
        (18, "need onset <= offset after filling"),
    ]
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 2
    assert table.videos == ["006_1", "007_3", "007_5"]
    assert not any("Subject column" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("onset", [-1, 0, None])
def test_samm_row_with_only_its_onset_missing_is_kept_from_the_first_frame(
    tmp_path: Path, onset: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: SAMM-LV's published 343 MaE include 12 rows whose onset is
    missing (the SpotFormer authors' table: samm_011_2 0 / 186 / 395), and they were
    dropped. Kept now, from the video's first frame (source frame 1 -> index 0), with a
    warning naming the row; training's loader and `evaluate --gt` count them alike."""
    rows = [
        _samm_row(11, "011_2_1", onset, 1302, 2765, "Macro"),  # row 11
        _samm_row(11, "011_2_2", 3600, 3610, 3660, "Micro - 1/2"),
        _samm_row(11, "011_2_3", onset, 0, 2765, "Macro"),  # onset and apex: dropped
    ]
    xlsx = write_samm(tmp_path / "SAMM_LongVideos_V2_Release.xlsx", rows=rows)
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_samm(xlsx)
    # floor((1302 - 1) / 7 = 185.86) = 185; (2765 - 1) / 7 = 394.86 -> 395.
    assert table.expressions == [
        Expression("011", "011_2", 0, 185, 395, "macro"),
        Expression("011", "011_2", 514, 515, 523, "micro"),
    ]
    assert [(d.row, d.reason.split(" (")[0]) for d in table.dropped] == [
        (13, "two or more of onset/apex/offset missing")
    ]
    shown = "blank" if onset is None else str(onset)
    assert [r.getMessage() for r in caplog.records if "onset missing" in r.getMessage()] == [
        f"{xlsx} [FACS_Movement_Only] row 11: onset missing (onset={shown}, apex=1302, "
        "offset=2765): kept, with the onset at the video's first frame (the MEGC protocol "
        "counts every row by its onset and offset)"
    ]
    gt = read_ground_truth(xlsx)
    assert sorted((g.onset, g.offset, g.kind) for g in gt) == [
        (0, 395, "macro"),
        (514, 523, "micro"),
    ]


def test_casme2_row_with_only_its_onset_missing_is_kept_from_the_first_frame(
    tmp_path: Path,
) -> None:
    """The same rule in CAS(ME)^2: img1.jpg, index 0."""
    rows = [[1, "disgust1_1", 0, 572, 608, AU, EMO, "macro-expression", "disgust"]]
    table = load_casme2(write_casme2(tmp_path / "CAS(ME)^2code_final.xlsx", rows=rows))
    assert table.expressions == [Expression("s15", "s15/15_0101", 0, 571, 607, "macro")]
    assert table.dropped == []


def test_samm_subject_column_that_disagrees_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in a probe: Subject 7 on a row of 006_1_1 was ignored without a word (the
    Filename's subject, which names the frames folder, is used)."""
    rows = [_samm_row(7, "006_1_1", 566, 648, 743, "Macro"), *SAMM_ROWS[1:], ["006", "006_1_9", 1, 10, 12, 14, None, "Macro", "", ""]]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_samm(write_samm(tmp_path / "s.xlsx", rows=rows))
    assert table.expressions[0] == SAMM_EXPECTED_7[0]  # subject 006, from the Filename
    said = [r.getMessage() for r in caplog.records if "Subject column" in r.getMessage()]
    assert (
        len(said) == 1
        and "disagrees with the Filename on 1 row(s) (row 11: Subject 7, " in (said[0])
    ), said  # "006" (text) on row 19 agrees with 006_1_9
    assert "Filename '006_1_1'); the Filename's subject is used" in said[0]


def test_samm_subsample_1_only_makes_frames_0_based(samm_xlsx: Path) -> None:
    table = load_samm(samm_xlsx, subsample=1)
    assert table.expressions[0] == Expression("006", "006_1", 565, 647, 742, "macro")
    # fractional 1200.5 - 1 = 1199.5 rounds half up to 1200; apex 1230 - 1.
    assert table.expressions[1] == Expression("006", "006_1", 1200, 1229, 1259, "micro")


def test_samm_within_one_frame_of_the_papers_division(tmp_path: Path) -> None:
    """The docstring's claim: (f - 1) / 7 lands within 1 of the paper's f / 7."""
    rng = np.random.default_rng(3)
    rows, frames = [], []
    for k in range(150):
        on = float(rng.integers(1, 20000)) + float(rng.choice([0.0, 0.5, 0.25]))
        ap = on + float(rng.integers(0, 60))
        off = ap + float(rng.integers(0, 60))
        rows.append(_samm_row(6, f"006_1_{k}", on, ap, off, "Macro"))
        frames.append((on, ap, off))
    table = load_samm(write_samm(tmp_path / "many.xlsx", rows=rows))
    assert len(table) == 150 and not table.dropped
    for e, (on, ap, off) in zip(table.expressions, frames, strict=True):
        paper = (math.floor(on / 7 + 0.5), math.floor(ap / 7), math.floor(off / 7 + 0.5))
        ours = (e.onset, e.apex, e.offset)
        assert all(abs(a - b) <= 1 for a, b in zip(ours, paper, strict=True)), (ours, paper)
        assert e.onset <= e.apex <= e.offset


def test_samm_header_elsewhere_and_missing(tmp_path: Path) -> None:
    moved = write_samm(tmp_path / "v3.xlsx", preamble=SAMM_PREAMBLE + [["extra line"]])
    assert load_samm(moved).expressions == SAMM_EXPECTED_7
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "FACS_Movement_Only"
    for row in [*SAMM_PREAMBLE, ["Subject", "File", "Onset"], *SAMM_ROWS]:
        ws.append(row)
    wb.save(tmp_path / "nohead.xlsx")
    with pytest.raises(AnnotationError, match=r"nohead.xlsx: sheet 'FACS_Movement_Only'.*row 10"):
        load_samm(tmp_path / "nohead.xlsx")
    wrong = write_casme2(tmp_path / "cas.xlsx")
    with pytest.raises(AnnotationError, match=r"cas.xlsx: no sheet 'FACS_Movement_Only'") as err:
        load_samm(wrong)
    # Which data set it is, and the option for it (found in review: only the sheets).
    assert str(err.value).endswith("; it is CAS(ME)^2 (--dataset casme2)'s workbook")
    with pytest.raises(AnnotationError) as err:
        load_casme2(write_samm(tmp_path / "samm.xlsx"))
    assert str(err.value).endswith("; it is SAMM-LV (--dataset samm)'s workbook")


@pytest.mark.parametrize(
    "row, match",
    [
        (_samm_row(6, "0061", 1, 2, 3, "Macro"), r"row 11: Filename '0061' is not like '006_1_1'"),
        (_samm_row(6, "006_1_1", 1, 2, 3, "Mega"), r"row 11: type 'Mega' is neither"),
        (_samm_row(6, "006_1_1", "x", 2, 3, "Macro"), r"row 11: Onset must be a number"),
    ],
)
def test_samm_malformed_rows(tmp_path: Path, row: list[Any], match: str) -> None:
    xlsx = write_samm(tmp_path / "bad.xlsx", rows=[row])
    with pytest.raises(AnnotationError, match=match) as err:
        load_samm(xlsx)
    assert str(err.value).startswith(f"{xlsx}: sheet 'FACS_Movement_Only'")


def test_samm_sources_from_root(samm_xlsx: Path, tmp_path: Path) -> None:
    base = tmp_path / "SAMM" / "SAMM_longvideos"
    for name in ("006_1", "007_3", "007_5", "010_6"):
        (base / name).mkdir(parents=True)
    (base / "README.txt").write_text("x")
    for root in (tmp_path / "SAMM", base):  # the data root, or the frames folder itself
        table = load_samm(samm_xlsx, root=root)
        assert table.sources["007_3"] == VideoRef(base / "007_3", 200.0, 7, "007")
        assert sorted(table.sources) == ["006_1", "007_3", "007_5", "010_6"]
    # The folder named in another case, as the workbook spells it (found in a probe).
    other = base.rename(base.with_name("SAMM_LongVideos"))
    table = load_samm(samm_xlsx, root=tmp_path / "SAMM")
    assert table.sources["007_3"] == VideoRef(other / "007_3", 200.0, 7, "007")
    with pytest.raises(ValueError, match="subsample"):
        load_samm(samm_xlsx, subsample=0)


# --- generic CSV -------------------------------------------------------------------------


def test_csv_round_trip_plain(cas_xlsx: Path, tmp_path: Path) -> None:
    table = load_casme2(cas_xlsx)
    out = table.to_csv(tmp_path / "plain.csv")
    assert out.read_text().splitlines()[0] == "subject,video,onset,apex,offset,type"
    assert b"\r" not in out.read_bytes()  # Unix line ends (csv's default is "\r\n")
    back = load_csv(out)
    assert back.expressions == table.expressions and back.sources == {}


def test_csv_round_trip_with_sources(samm_xlsx: Path, tmp_path: Path) -> None:
    base = tmp_path / "data" / "SAMM_longvideos"
    for name in ("006_1", "007_3", "007_5", "010_6"):
        (base / name).mkdir(parents=True)
    table = load_samm(samm_xlsx, root=tmp_path / "data")
    (tmp_path / "ann").mkdir()
    out = table.to_csv(tmp_path / "ann" / "samm.csv")
    text = out.read_text()
    assert "../data/SAMM_longvideos/006_1,200.0,7" in text  # relative to the CSV
    assert "010_6,,,,,../data/SAMM_longvideos/010_6" in text  # a video without expressions
    back = load_csv(out)
    assert back.expressions == table.expressions
    assert back.sources == table.sources


def test_csv_hand_written(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    text = (
        "\ufeffSubject,Video,Onset,Apex,Offset,Type,Path,FPS\n"  # BOM and capitals: Excel
        "alice,a1,10,12,20,macro,clips/a1.mp4,25\n"
        "alice,a1,30,,36,Micro,clips/a1.mp4,25\n"  # empty apex -> (30 + 36) // 2 = 33
        "bob,b1,0,-1,5,micro,/abs/b1,\n"  # apex -1 -> 2; frame 0 is valid (0-based)
        ",,,,,,,\n"
    )
    path = tmp_path / "mine.csv"
    path.write_text(text, encoding="utf-8")
    table = load_csv(path)
    assert table.expressions == [
        Expression("alice", "a1", 10, 12, 20, "macro"),
        Expression("alice", "a1", 30, 33, 36, "micro"),
        Expression("bob", "b1", 0, 2, 5, "micro"),
    ]
    assert table.sources == {
        "a1": VideoRef(tmp_path / "clips" / "a1.mp4", 25.0, 1, "alice"),
        "b1": VideoRef(Path("/abs/b1"), None, 1, "bob"),
    }
    assert load_annotations(path).expressions == table.expressions


@pytest.mark.parametrize(
    "body, match",
    [
        ("subject,video,onset,apex,offset\n", r"line 1: missing column\(s\) type"),
        (
            "subject,video,onset,apex,offset,type\ns,v,1,2,x,macro\n",
            r"line 2: offset must be an integer, got 'x'",
        ),
        (
            "subject,video,onset,apex,offset,type\ns,v,1,2,3,macro\ns,v,9,2,3,macro\n",
            r"line 3: need 0 <= onset",
        ),
        ("subject,video,onset,apex,offset,type\ns,v,1,2,3,mega\n", r"line 2: type 'mega'"),
        ("subject,video,onset,apex,offset,type\n,v,1,2,3,macro\n", r"line 2: subject is empty"),
        (
            "subject,video,onset,apex,offset,type,path\ns,v,1,2,3,macro,a.mp4\ns,v,4,5,6,macro,b.mp4\n",
            r"line 3: video 'v' has path \S*b\.mp4 here but path \S*a\.mp4 on line 2; give one",
        ),
        (  # found in review: the other line was not named
            "subject,video,onset,apex,offset,type,path,fps\ns,v,1,2,3,macro,a.mp4,25\n"
            "s,w,1,2,3,macro,w.mp4,30\ns,v,4,5,6,macro,a.mp4,30\n",
            r"line 4: video 'v' has fps 30.0 here but fps 25.0 on line 2; give one path, fps",
        ),
        (  # found in a probe: "fps None" for the row that left it empty
            "subject,video,onset,apex,offset,type,path,fps\ns,v,1,2,3,macro,a.mp4,25\n"
            "s,v,4,5,6,macro,a.mp4,\n",
            r"line 3: video 'v' has an empty fps \(the video's own rate\) here but fps 25.0 on "
            r"line 2; give one path, fps and stride per video \(on every row that has its path\)",
        ),
        (
            "subject,video,onset,apex,offset,type,path,fps\ns,v,1,2,3,macro,a.mp4,fast\n",
            r"line 2: fps must be a number",
        ),
        (  # found in review: bob's row joined alice's video and bob's fold vanished
            "subject,video,onset,apex,offset,type\nalice,a1,1,2,3,macro\nc,b1,1,2,3,macro\n"
            "bob,a1,4,5,6,micro\n",
            r"line 4: video 'a1' is listed under subject 'bob' here and 'alice' on line 2; "
            r".* unique across subjects \(e.g. 'bob_a1'\)",
        ),
        (  # the same, declared by a path row (two subjects' v1 in their own folders)
            "subject,video,onset,apex,offset,type,path\nalice,v1,,,,,alice/v1.mp4\n"
            "bob,v1,,,,,bob/v1.mp4\n",
            r"line 3: video 'v1' is listed under subject 'bob' here and 'alice' on line 2",
        ),
    ],
)
def test_csv_malformed(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(AnnotationError, match=match) as err:
        load_csv(path)
    assert str(err.value).startswith(f"{path}: line ")


def test_load_annotations_dispatch(cas_xlsx: Path, samm_xlsx: Path, tmp_path: Path) -> None:
    assert load_annotations(cas_xlsx).expressions == CAS_EXPECTED
    assert load_annotations(samm_xlsx, subsample=7).expressions == SAMM_EXPECTED_7
    other = tmp_path / "other.xlsx"
    openpyxl.Workbook().save(other)
    with pytest.raises(AnnotationError, match=r"neither CAS.*; its sheets: 'Sheet'$"):
        load_annotations(other)
    # A sheet renamed in case or spacing: the workbook is still told (found in a probe).
    renamed = ("casfecode_final ", "Naming Rule1", "naming rule2")
    xlsx = write_casme2(tmp_path / "renamed.xlsx", sheets=renamed)
    assert load_annotations(xlsx).expressions == CAS_EXPECTED
    with pytest.raises(AnnotationError, match="unknown annotation format"):
        load_annotations(tmp_path / "x.json")
    with pytest.raises(AnnotationError, match="no such annotation file"):
        load_csv(tmp_path / "none.csv")


def test_table_keeps_its_old_api() -> None:
    e = Expression("s", "v", 1, 2, 3, "micro")
    table = AnnotationTable([e])
    assert len(table) == 1 and list(table) == [e] and table.sources == {} and table.dropped == []
    assert table.for_video("v") == [e] and table.for_subject("s") == [e]
    with pytest.raises(ValueError, match="fps"):
        VideoRef(Path("x"), fps=0.0)
    with pytest.raises(ValueError, match="stride"):
        VideoRef(Path("x"), stride=0)


# --- input checks shared by every reader (adversarial review) ----------------------------


def _formula_workbook(path: Path, write, cell: str, formula: str) -> Path:
    """``write``'s workbook with ``cell`` of its first sheet set to ``formula``; openpyxl
    saves a formula without a computed value, as a script that builds a workbook would."""
    write(path)
    wb = openpyxl.load_workbook(path)
    wb.worksheets[0][cell] = formula
    wb.save(path)
    return path


def test_casme2_frame_of_2_to_the_31_or_more_is_refused(tmp_path: Path) -> None:
    """Offset 10**30 was an OverflowError traceback in evaluation (found in review)."""
    rows = [list(r) for r in CAS_ROWS]
    rows[2][4] = 10**30  # row 3, column E (offset)
    xlsx = write_casme2(tmp_path / "big.xlsx", rows=rows)
    with pytest.raises(AnnotationError) as err:
        load_casme2(xlsx)
    msg = str(err.value)
    assert msg.startswith(f"{xlsx}: sheet 'CASFEcode_final' row 3: offset (column E) = 1e+30")
    assert "below 2**31" in msg and "\n" not in msg


def test_samm_frame_of_2_to_the_31_or_more_is_refused(tmp_path: Path) -> None:
    xlsx = write_samm(tmp_path / "big.xlsx", rows=[_samm_row(6, "006_1_1", 2.0**31, 2, 3, "Macro")])
    with pytest.raises(AnnotationError, match=r"row 11: Onset \(column D\) = 2147483648 is too"):
        load_samm(xlsx)


def test_casme2_repeated_row_is_kept_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 10 repeats row 1 (1-based 557-608 of disgust1, macro; apex 570, not 572): kept
    and counted, as the MEGC protocol counts every annotation row (SPEC's 300 MaE / 57 ME
    are of the rows as released), with a warning; it is not a dropped row."""
    rows = [list(r) for r in CAS_ROWS] + [[1, "disgust1_9", 557, 570, 608, AU, EMO, "macro", ""]]
    xlsx = write_casme2(tmp_path / "dup.xlsx", rows=rows)
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_casme2(xlsx)
    assert table.expressions == [
        *CAS_EXPECTED,
        Expression("s15", "s15/15_0101", 556, 569, 607, "macro"),
    ]
    assert [d.row for d in table.dropped] == [5, 6]  # SPEC's rule only
    assert caplog.records[-1].getMessage() == (
        f"{xlsx} [CASFEcode_final] row 10 repeats row 1 (same video 's15/15_0101', "
        "onset 557, offset 608 and type macro; apex 570 here, 572 there): kept, so this "
        "expression is counted twice, as the MEGC protocol counts every annotation row; "
        "if the repeat is a mistake, delete row 10 in the file"
    )


def test_samm_repeats_are_compared_in_the_files_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 13 repeats row 11 exactly: kept, with a warning. Row 12 (onset 567) is another
    expression in the file although /7 maps it to the same interval as row 11 (566 -> 81,
    567 -> (566 / 7 = 80.86) -> 81): kept, no warning. Row 14 is row 11's third copy."""
    rows = [
        _samm_row(6, "006_1_1", 566, 648, 743, "Macro"),
        _samm_row(6, "006_1_2", 567, 648, 743, "Macro"),
        _samm_row(6, "006_1_3", 566, 648, 743, "Macro"),
        _samm_row(6, "006_1_4", 566, 648, 743, "Macro"),
    ]
    xlsx = write_samm(tmp_path / "dup.xlsx", rows=rows)
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_samm(xlsx)
    assert table.expressions == [Expression("006", "006_1", 81, 92, 106, "macro")] * 4
    assert table.dropped == []
    same = "(same video '006_1', onset 566, offset 743 and type macro): kept, so this expression"
    fix = "as the MEGC protocol counts every annotation row; if the repeat is a mistake, delete"
    assert [r.getMessage() for r in caplog.records] == [
        f"{xlsx} [FACS_Movement_Only] row 13 repeats row 11 {same} is counted twice, {fix} row 13 in the file",
        f"{xlsx} [FACS_Movement_Only] row 14 repeats row 11 {same} is counted 3 times, {fix} row 14 in the "
        "file",
    ]


def test_csv_repeated_expression_is_kept_and_training_and_evaluation_agree(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "subject,video,onset,apex,offset,type\ns,v,1,2,3,macro\ns,v,1,2,3,MaE\ns,v,1,2,3,me\n"
    path = tmp_path / "dup.csv"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="spotformer.data.annotations"):
        table = load_csv(path)
    # Line 3 is line 2 again (MaE is macro): kept and reported; line 4 is a
    # micro-expression: kept, not a repeat.
    assert table.expressions == [
        Expression("s", "v", 1, 2, 3, "macro"),
        Expression("s", "v", 1, 2, 3, "macro"),
        Expression("s", "v", 1, 2, 3, "micro"),
    ]
    assert table.dropped == []
    warning = (
        f"{path} line 3 repeats line 2 (same video 'v', onset 1, offset 3 and type macro): "
        "kept, so this expression is counted twice, as the MEGC protocol counts every "
        "annotation row; if the repeat is a mistake, delete line 3 in the file"
    )
    assert [r.getMessage() for r in caplog.records] == [warning]
    from spotformer.metrics import read_ground_truth

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        gts = read_ground_truth(path)
    assert [(g.video, g.onset, g.offset, g.kind) for g in gts] == [
        (e.video, e.onset, e.offset, e.kind) for e in table.expressions
    ]
    assert [r.getMessage() for r in caplog.records] == [warning]


@pytest.mark.parametrize(
    "write, cell, label",
    [
        (write_casme2, "C1", r"onset \(column C\) is the formula '=20\+8'"),
        (write_casme2, "H2", r"the type \(column H\) is the formula '=\"micro\"'"),
        (write_samm, "F11", r"Offset \(column F\) is the formula '=20\+8'"),
    ],
)
def test_formula_without_a_cached_value_is_named(tmp_path: Path, write, cell: str, label) -> None:
    """openpyxl reads such a cell as blank: it was 'onset=blank' and a dropped row."""
    formula = '="micro"' if cell == "H2" else "=20+8"
    xlsx = _formula_workbook(tmp_path / "f.xlsx", write, cell, formula)
    with pytest.raises(AnnotationError, match=label) as err:
        load_annotations(xlsx)
    row = cell[1:]
    assert str(err.value).startswith(f"{xlsx}: sheet ")
    assert f" row {row}: " in str(err.value)
    assert "open and save the workbook in Excel or LibreOffice" in str(err.value)


def test_a_blank_frame_cell_that_is_no_formula_is_still_a_missing_value(tmp_path: Path) -> None:
    """The formula check only looks; a truly blank offset still means offset = apex."""
    rows = [[1, "disgust1_1", 557, 572, None, AU, EMO, "macro-expression", ""]]
    table = load_casme2(write_casme2(tmp_path / "blank.xlsx", rows=rows))
    assert table.expressions == [Expression("s15", "s15/15_0101", 556, 571, 571, "macro")]


# Both CSV readers (load_csv for training, read_intervals for evaluate) check a file the
# same way; each body is a valid annotation CSV header for both.
HEAD = "subject,video,onset,apex,offset,type\n"


def _both_readers(path: Path) -> list[tuple[str, int, int, str]]:
    """Each reader's (video, onset, offset, type) tuples, which must agree."""
    a = [(e.video, e.onset, e.offset, e.kind) for e in load_csv(path).expressions]
    b = [(i.video, i.onset, i.offset, i.kind) for i in read_intervals(path)]
    assert a == b
    return a


@pytest.mark.parametrize(
    "spelling, kind",
    [
        ("macro", "macro"),
        ("MaE", "macro"),
        ("MACRO-EXPRESSION", "macro"),
        (" Macro ", "macro"),
        ("micro", "micro"),
        ("ME", "micro"),
        ("me", "micro"),
        ("Micro - 1/2", "micro"),
    ],
)
def test_both_csv_readers_accept_the_same_types(tmp_path: Path, spelling: str, kind: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"{HEAD}s,v,1,2,3,{spelling}\n")
    assert _both_readers(path) == [("v", 1, 3, kind)]


@pytest.mark.parametrize(
    "body, needle",
    [
        # A duplicated column: DictReader used the last one silently.
        ("subject,video,onset,apex,offset,type,onset\ns,v,1,2,3,macro,9\n",
         ": line 1: duplicate column 'onset' (columns 3, 7)"),
        # A frame too large for the int64 matching (the annotation CSV: too large for any video).
        (HEAD + "s,v,1,2,999999999999999999999,macro\n",
         ": line 2: offset = '999999999999999999999' is too large"),
        # An extra field (an unquoted comma): load_csv ignored it.
        (HEAD + "s,v,1,2,3,macro,oops\n",
         ": line 2 has 7 fields, the header has 6 (extra: 'oops')"),
        # A short row: was "offset must be an integer, got ''" / "offset = ''".
        (HEAD + "s,v,1,2,3,macro\n\ns,v,4\n", ": line 4 has 3 fields, the header has 6"),
        ("subject;video;onset;apex;offset;type\ns;v;1;2;3;macro\n",
         "the file seems to be separated by ';', not ','"),
        ("subject\tvideo\tonset\tapex\toffset\ttype\ns\tv\t1\t2\t3\tmacro\n",
         "the file seems to be separated by '\\t', not ','"),
        (HEAD + "s,v,1,2,3,smile\n", ": line 2: type"),
        ("", ": the file is empty"),
    ],
)  # fmt: skip
def test_both_csv_readers_refuse_the_same_files(tmp_path: Path, body: str, needle: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(body)
    for reader in (load_csv, read_intervals):
        with pytest.raises(SpotFormerError) as err:
            reader(path)
        msg = str(err.value)
        assert msg.startswith(f"{path}: ") and needle in msg and "\n" not in msg, (reader, msg)
    # Each reader raises its own typed error.
    with pytest.raises(AnnotationError):
        load_csv(path)


def test_both_csv_readers_accept_trailing_empty_fields_and_omitted_optional_ones(
    tmp_path: Path,
) -> None:
    """Excel's trailing commas (empty extra fields) are no extra data; a row may stop
    after the last required column (path/fps/stride, score left empty)."""
    path = tmp_path / "ok.csv"
    path.write_text(
        "subject,video,onset,apex,offset,type,path,fps,stride\n"
        "s,v,1,2,3,macro,,,,,\n"  # two empty fields past the header
        "s,v,5,6,9,micro\n"  # stops after type
    )
    assert _both_readers(path) == [("v", 1, 3, "macro"), ("v", 5, 9, "micro")]


def test_load_csv_binary_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "ann.csv"
    path.write_bytes(b"\xff\xfe\x00PK\x03\x04")
    with pytest.raises(AnnotationError, match=r"ann\.csv: not a UTF-8 text CSV"):
        load_csv(path)


# --- Found by mutation testing (2026-11-29): each test fails on a plausible bug that ---
# --- the tests above let through. ---------------------------------------------------------

ONE_CAS = {"rule1": RULE1_ROW_ALIGNED, "rule2": [["0101", "disgust1"]]}


def test_casme2_one_frame_expression_is_kept(tmp_path: Path) -> None:
    row = [1, "disgust1_1", 100, 100, 100, AU, EMO, "micro-expression", ""]
    t = load_casme2(write_casme2(tmp_path / "c.xlsx", [row], **ONE_CAS))
    assert t.expressions == [Expression("s15", "s15/15_0101", 99, 99, 99, "micro")]
    assert not t.dropped


def test_casme2_apex_before_the_onset_moves_to_the_onset(tmp_path: Path) -> None:
    row = [1, "disgust1_1", 50, 40, 60, AU, EMO, "macro-expression", ""]
    t = load_casme2(write_casme2(tmp_path / "c.xlsx", [row], **ONE_CAS))
    assert t.expressions == [Expression("s15", "s15/15_0101", 49, 49, 59, "macro")]


def _samm_with_header(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "FACS_Movement_Only"
    for row in [*SAMM_PREAMBLE, header, *rows]:
        ws.append(row)
    wb.save(path)
    return path


def test_samm_header_names_with_a_frame_suffix(tmp_path: Path) -> None:
    """ "Onset Frame" is the Onset column (as the reader's docstring says)."""
    header = [h + " Frame" if h in ("Onset", "Apex", "Offset") else h for h in SAMM_HEADER]
    xlsx = _samm_with_header(tmp_path / "s.xlsx", header, [SAMM_ROWS[0]])
    assert load_samm(xlsx).expressions == [Expression("006", "006_1", 81, 92, 106, "macro")]


def test_samm_sources_take_the_subsample_given(tmp_path: Path) -> None:
    xlsx = write_samm(tmp_path / "s.xlsx", [SAMM_ROWS[0]])
    (tmp_path / "SAMM" / "SAMM_longvideos" / "006_1").mkdir(parents=True)
    t = load_samm(xlsx, root=tmp_path / "SAMM", subsample=1)
    assert t.sources["006_1"].stride == 1 and t.expressions[0].onset == 565
    assert load_samm(xlsx, root=tmp_path / "SAMM", subsample=5).sources["006_1"].stride == 5


@pytest.mark.parametrize(
    "body",
    [
        "s,v,1,-2,3,macro\n",  # only -1 (and empty) means "no apex"
        "s,v,-1,,3,macro\n",
        "s,v,1,9,3,macro\n",  # apex past the offset
    ],
)
def test_csv_bad_frames_are_annotation_errors_naming_the_line(tmp_path: Path, body: str) -> None:
    p = tmp_path / "a.csv"
    p.write_text(HEAD + body)
    with pytest.raises(AnnotationError, match=r"a\.csv: line 2: need 0 <= onset <= apex <= offset"):
        load_csv(p)


def test_csv_fractional_frame_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text(HEAD + "s,v,1.5,2,3,macro\n")
    with pytest.raises(AnnotationError, match=r"line 2: onset must be an integer, got '1\.5'"):
        load_csv(p)


def test_csv_subject_given_on_a_later_row_of_the_video(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text(HEAD.rstrip() + ",path\n,v,,,,,v.mp4\ns1,v,1,2,3,macro,v.mp4\n")
    assert load_csv(p).sources["v"] == VideoRef(tmp_path / "v.mp4", None, 1, "s1")


def test_csv_row_one_field_short_is_named_as_short(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text(HEAD + "s,v,1,2,3\n")
    with pytest.raises(AnnotationError, match="line 2 has 5 fields, the header has 6; a field is"):
        load_csv(p)


def test_expression_checks_the_apex_and_the_frame_limit() -> None:
    with pytest.raises(ValueError, match="onset <= apex <= offset"):
        Expression("s", "v", 1, 5, 3, "micro")
    with pytest.raises(ValueError, match="too large"):
        Expression("s", "v", 0, 0, 2**31, "micro")
    Expression("s", "v", 0, 0, 2**31 - 1, "micro")
