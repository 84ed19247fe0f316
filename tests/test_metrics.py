"""MEGC evaluation (SPEC.md section 6) against hand-computed counts."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import torch

from spotformer.metrics import (
    Counts,
    EvaluationError,
    Interval,
    evaluate,
    iou,
    iou_end_minus_start,
    iou_matrix,
    match,
    match_authors,
    read_ground_truth,
    read_intervals,
    write_intervals,
)


def I(video: str, on: int, off: int, kind: str = "micro", score: float = 1.0) -> Interval:  # noqa: E743
    return Interval(video, on, off, kind, score)  # type: ignore[arg-type]


# -- IoU ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ((0, 4), (5, 9), 0.0),  # touching: no shared frame
        ((0, 4), (4, 9), 1 / 10),  # one shared frame (4) of 10
        ((0, 9), (0, 4), 5 / 10),  # exactly 0.5
        ((0, 2), (0, 5), 3 / 6),  # exactly 0.5 again, other lengths
        ((3, 3), (3, 3), 1.0),  # one-frame intervals
        ((0, 9), (20, 30), 0.0),  # disjoint
        ((0, 9), (3, 12), 7 / 13),  # inter 3..9 = 7, union 10 + 10 - 7
    ],
)
def test_iou_inclusive_frames(a, b, want) -> None:
    assert iou(*a, *b) == pytest.approx(want, abs=0)
    assert iou(*b, *a) == pytest.approx(want, abs=0)
    m = iou_matrix(*(torch.tensor([v]) for v in (a[0], a[1], b[0], b[1])))
    assert float(m[0, 0]) == pytest.approx(want, abs=0)


# -- matching and counts ------------------------------------------------------------------


def test_touching_interval_is_not_a_tp() -> None:
    r = evaluate([I("v", 0, 4)], [I("v", 5, 9)])
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (0, 1, 1)


def test_iou_exactly_half_is_a_tp_and_just_below_is_not() -> None:
    r = evaluate([I("v", 0, 4)], [I("v", 0, 9)])  # 5 / 10
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (1, 0, 0)
    r = evaluate([I("v", 0, 3)], [I("v", 0, 9)])  # 4 / 10
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (0, 1, 1)


def test_several_proposals_on_one_ground_truth_give_one_tp() -> None:
    gts = [I("v", 10, 20)]
    preds = [I("v", 10, 20), I("v", 11, 20), I("v", 10, 19)]
    r = evaluate(preds, gts)
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (1, 2, 0)
    assert r.micro.precision == pytest.approx(1 / 3)
    assert r.micro.recall == 1.0
    assert r.micro.f1 == pytest.approx(2 * 1 / (3 + 1))


def test_one_proposal_on_several_ground_truths_gives_one_tp() -> None:
    gts = [I("v", 10, 20), I("v", 10, 21)]
    r = evaluate([I("v", 10, 20)], gts)
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (1, 0, 1)


def test_empty_predictions() -> None:
    gts = [I("v", 0, 9, "macro"), I("v", 30, 60, "macro"), I("w", 5, 9, "micro")]
    r = evaluate([], gts)
    assert (r.macro.tp, r.macro.fp, r.macro.fn) == (0, 0, 2)
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (0, 0, 1)
    assert (r.overall.precision, r.overall.recall, r.overall.f1) == (0.0, 0.0, 0.0)


def test_empty_everything_is_zero_not_an_error() -> None:
    r = evaluate([], [])
    assert r.to_dict()["overall"] == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }


def test_types_and_videos_must_agree() -> None:
    gts = [I("v", 0, 9, "micro")]
    r = evaluate([I("v", 0, 9, "macro"), I("w", 0, 9, "micro")], gts)
    assert (r.macro.tp, r.macro.fp, r.macro.fn) == (0, 1, 0)
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (0, 1, 1)


def test_both_types_and_pooled_overall_by_hand() -> None:
    gts = [
        I("a", 0, 9, "macro"),
        I("a", 50, 99, "macro"),
        I("a", 200, 210, "micro"),
        I("b", 10, 14, "micro"),
    ]
    preds = [
        I("a", 2, 9, "macro"),  # IoU 8/10: TP
        I("a", 60, 140, "macro"),  # IoU 40/91: FP
        I("a", 300, 320, "macro"),  # FP
        I("a", 200, 209, "micro"),  # IoU 10/11: TP
        I("b", 10, 14, "macro"),  # right place, wrong type: FP (macro)
    ]
    r = evaluate(preds, gts)
    assert (r.macro.tp, r.macro.fp, r.macro.fn) == (1, 3, 1)
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (1, 0, 1)
    assert (r.overall.tp, r.overall.fp, r.overall.fn) == (2, 3, 2)
    assert r.macro.f1 == pytest.approx(2 * 1 / (4 + 2))
    assert r.micro.f1 == pytest.approx(2 * 1 / (1 + 2))
    assert r.overall.f1 == pytest.approx(2 * 2 / (5 + 4))
    assert r.overall.precision == pytest.approx(2 / 5)
    assert r.overall.recall == pytest.approx(2 / 4)


def test_matching_is_maximal_where_greedy_by_iou_undercounts() -> None:
    # A = [1, 10] has IoU 9/11 with G1 = [0, 9] and 7/13 with G2 = [4, 13];
    # B = [0, 5] has IoU 6/10 with G1 only. Greedy-by-IoU pairs A-G1 first and leaves
    # B and G2 unmatched (1 TP); the one-to-one rule allows A-G2 and B-G1 (2 TPs).
    gts = [I("v", 0, 9), I("v", 4, 13)]
    preds = [I("v", 1, 10), I("v", 0, 5)]
    assert iou(1, 10, 0, 9) > iou(0, 5, 0, 9) >= 0.5 and iou(1, 10, 4, 13) >= 0.5
    assert iou(0, 5, 4, 13) < 0.5
    pairs = match(preds, gts)
    assert sorted(pairs) == [(0, 1), (1, 0)]
    r = evaluate(preds, gts)
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (2, 0, 0)


def test_counts_do_not_depend_on_row_order() -> None:
    g = torch.Generator().manual_seed(0)
    gts, preds = [], []
    for v in ("a", "b"):
        for _ in range(6):
            s = int(torch.randint(0, 200, (1,), generator=g))
            gts.append(I(v, s, s + int(torch.randint(3, 30, (1,), generator=g))))
        for _ in range(10):
            s = int(torch.randint(0, 200, (1,), generator=g))
            preds.append(I(v, s, s + int(torch.randint(3, 30, (1,), generator=g))))
    base = evaluate(preds, gts).to_dict()
    assert base["micro"]["tp"] > 0  # the case is not trivially empty
    rnd = random.Random(1)
    for _ in range(5):
        rnd.shuffle(preds)
        rnd.shuffle(gts)
        assert evaluate(preds, gts).to_dict() == base


# -- the authors' protocol (protocol="authors") ---------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ((0, 9), (0, 4), 4 / 9),  # inclusive: 5 / 10
        ((0, 10), (5, 15), 5 / 15),
        ((0, 4), (4, 9), 0.0),  # one shared frame: no length end - start
        ((3, 3), (3, 3), 0.0),  # one-frame intervals: empty union
        ((0, 9), (20, 30), 0.0),
    ],
)
def test_iou_end_minus_start_by_hand(a, b, want) -> None:
    assert iou_end_minus_start(*a, *b) == pytest.approx(want)
    assert iou_end_minus_start(*a, *b) <= iou(*a, *b)


def test_authors_protocol_exact_half_and_one_frame_intervals_are_no_tp() -> None:
    preds, gts = [I("v", 0, 9), I("w", 3, 3)], [I("v", 0, 4), I("w", 3, 3)]
    assert evaluate(preds, gts).micro.tp == 2  # inclusive IoU 0.5 and 1.0
    r = evaluate(preds, gts, protocol="authors")
    assert (r.micro.tp, r.micro.fp, r.micro.fn, r.micro.f1) == (0, 2, 2, 0.0)


def test_authors_protocol_is_greedy_in_ground_truth_order() -> None:
    # End - start IoU: P0 = [0, 14] has 14/16 with G1 = [0, 16] and 14/20 with
    # G2 = [0, 20]; P1 = [0, 9] has 9/16 with G1 and 9/20 < 0.5 with G2. G1 first takes
    # P0, its best, and G2 is left with P1: 1 TP. G2 first: P0-G2, then P1-G1: 2 TPs.
    # The MEGC protocol (inclusive IoU, maximum matching) gives 2 either way.
    preds = [I("v", 0, 14), I("v", 0, 9)]
    g1, g2 = I("v", 0, 16), I("v", 0, 20)
    assert match_authors(preds, [g1, g2]) == [(0, 0)]
    assert match_authors(preds, [g2, g1]) == [(0, 0), (1, 1)]
    r = evaluate(preds, [g1, g2], protocol="authors")
    assert (r.micro.tp, r.micro.f1) == (1, 0.5)
    assert evaluate(preds, [g1, g2]).micro.tp == 2


def test_authors_protocol_ties_take_the_higher_score_then_the_first_row() -> None:
    preds = [I("v", 0, 8), I("v", 2, 10)]  # both 8/10 with [0, 10]
    assert match_authors(preds, [I("v", 0, 10)]) == [(0, 0)]
    assert match_authors(preds[::-1], [I("v", 0, 10)]) == [(0, 0)]
    scored = [I("v", 0, 8, score=0.4), I("v", 2, 10, score=0.9)]
    assert match_authors(scored, [I("v", 0, 10)]) == [(1, 0)]


def test_authors_protocol_never_counts_more_than_megc() -> None:
    g = torch.Generator().manual_seed(3)
    fewer = 0
    for _ in range(300):
        preds, gts = [], []
        for lst, n in ((preds, 6), (gts, 4)):
            for _ in range(n):
                s = int(torch.randint(0, 80, (1,), generator=g))
                lst.append(I("v", s, s + int(torch.randint(0, 20, (1,), generator=g))))
        a, m = evaluate(preds, gts, protocol="authors"), evaluate(preds, gts)
        assert a.micro.tp <= m.micro.tp
        fewer += a.micro.tp < m.micro.tp
    assert fewer > 0
    with pytest.raises(ValueError, match="protocol"):
        evaluate(preds, gts, protocol="loose")  # type: ignore[arg-type]


def test_iou_threshold_is_a_parameter() -> None:
    preds, gts = [I("v", 0, 3)], [I("v", 0, 9)]  # IoU 0.4
    assert evaluate(preds, gts, 0.5).micro.tp == 0
    assert evaluate(preds, gts, 0.4).micro.tp == 1


# -- the paper's Table 6 ------------------------------------------------------------------

TABLE6 = {
    # data set: (MaE tp, fp, fn), (ME tp, fp, fn), F1 MaE, ME, overall, P/R overall
    "SAMM-LV": ((163, 227, 180), (61, 65, 98), (0.4447, 0.4281, 0.4401), (0.4341, 0.4462)),
    "CAS(ME)^2": ((165, 187, 135), (10, 4, 47), (0.5061, 0.2817, 0.4841), (0.4781, 0.4902)),
}


@pytest.mark.parametrize("name", list(TABLE6))
def test_reproduces_table6_f1_from_its_counts(name: str) -> None:
    mae, me, f1s, (p_all, r_all) = TABLE6[name]
    c_mae, c_me = Counts(*mae), Counts(*me)
    overall = c_mae + c_me
    assert round(c_mae.f1, 4) == f1s[0]
    assert round(c_me.f1, 4) == f1s[1]
    assert round(overall.f1, 4) == f1s[2]
    assert (round(overall.precision, 4), round(overall.recall, 4)) == (p_all, r_all)


def test_table6_samm_precision_recall_per_type() -> None:
    assert round(Counts(163, 227, 180).precision, 4) == 0.4179
    assert round(Counts(163, 227, 180).recall, 4) == 0.4752
    assert round(Counts(10, 4, 47).precision, 4) == 0.7143
    assert round(Counts(10, 4, 47).recall, 4) == 0.1754


# -- CSV reading --------------------------------------------------------------------------


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_intervals_ignores_extra_columns_and_accepts_aliases(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "gt.csv",
        "\ufeffsubject,video,onset,apex,offset,type,path,fps\n"
        "s1,v1,10,12,15,micro,x.mp4,30\n"
        "s1,v1,40,50,80,MaE,x.mp4,30\n"
        "\n",
    )
    got = read_intervals(p)
    assert got == [I("v1", 10, 15, "micro"), I("v1", 40, 80, "macro")]


def test_write_intervals_round_trip_with_unix_line_ends(tmp_path: Path) -> None:
    rows = [
        Interval("v,1", 3, 9, "micro", 0.25, 6),  # a comma in a name is quoted
        Interval("v2", 10, 40, "macro", 0.125, 20),
    ]
    out = write_intervals(rows, tmp_path / "pred.csv")
    data = out.read_bytes()
    assert b"\r" not in data and data.count(b"\n") == 3  # csv's default ends rows in "\r\n"
    assert [(i.video, i.onset, i.offset, i.kind, i.score) for i in read_intervals(out)] == [
        (i.video, i.onset, i.offset, i.kind, i.score) for i in rows
    ]


def test_read_intervals_header_only_is_empty(tmp_path: Path) -> None:
    p = _write(tmp_path / "pred.csv", "video,onset,offset,type,score\n")
    assert read_intervals(p) == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("video,onset,type\nv,1,micro\n", "missing column(s) offset"),
        ("video,onset,offset,type\nv,1,5,smile\n", "type = 'smile'"),
        ("video,onset,offset,type\nv,9,5,micro\n", "offset 5 is before onset 9"),
        ("video,onset,offset,type\nv,1.5,5,micro\n", "onset = '1.5'"),
        ("video,onset,offset,type,score\nv,1,5,micro,high\n", "score = 'high'"),
    ],
)
def test_read_intervals_errors_name_file_and_value(tmp_path: Path, text: str, needle: str) -> None:
    p = _write(tmp_path / "bad.csv", text)
    with pytest.raises(EvaluationError) as exc:
        read_intervals(p)
    assert str(p) in str(exc.value) and needle in str(exc.value)


def test_read_intervals_skips_videos_listed_without_expressions(tmp_path: Path) -> None:
    """The annotation CSV (``AnnotationTable.to_csv``, ``make-synthetic``'s annotations.csv)
    lists a video without ground truth as a row with empty onset/apex/offset/type."""
    p = _write(
        tmp_path / "gt.csv",
        "subject,video,onset,apex,offset,type,path,fps,stride\n"
        "s15,s15/15_0101,10,12,20,macro,a,30.0,1\n"
        "s15,s15/15_0102,,,,,b,30.0,1\n",
    )
    assert read_intervals(p) == [I("s15/15_0101", 10, 20, "macro")]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "the file is empty"),
        ("type,video,onset,offset\nmacro,v\n", "line 2 has 2 fields, the header has 4"),
        (
            "video,onset,offset,type\nv,1,5,micro,9\n",
            "line 2 has 5 fields, the header has 4 (extra: '9')",
        ),
        ("video,onset,offset,type,score\nv,1,5,micro,nan\n", "score = 'nan' is not a finite"),
        ("video,onset,offset,type\n,1,5,micro\n", "line 2: video is empty"),
    ],
)
def test_read_intervals_odd_rows_are_typed_errors(tmp_path: Path, text: str, needle: str) -> None:
    p = _write(tmp_path / "odd.csv", text)
    with pytest.raises(EvaluationError) as exc:
        read_intervals(p)
    assert str(p) in str(exc.value) and needle in str(exc.value)


def test_read_intervals_binary_file_and_negative_onset(tmp_path: Path) -> None:
    """An .xlsx (or a video) given as a CSV, and a negative frame: one-line errors."""
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["video", "onset"])
    wb.save(tmp_path / "gt.xlsx")
    with pytest.raises(EvaluationError, match=r"gt\.xlsx: not a UTF-8 text CSV"):
        read_intervals(tmp_path / "gt.xlsx")
    p = _write(tmp_path / "neg.csv", "video,onset,offset,type\nv,-5,5,micro\n")
    with pytest.raises(EvaluationError, match="line 2: onset -5 is negative"):
        read_intervals(p)


def test_write_intervals_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    (tmp_path / "out.csv").mkdir()  # os.replace onto a folder fails
    with pytest.raises(OSError):
        write_intervals([I("v", 1, 5)], tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_read_intervals_blank_trailing_fields_are_a_blank_row(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.csv", "video,onset,offset,type\nv,1,5,micro\n,,,,\n")
    assert read_intervals(p) == [I("v", 1, 5, "micro")]


def test_missing_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="cannot open"):
        read_intervals(tmp_path / "nope.csv")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    items = [I("v", 1, 5, "micro", 0.25), I("w", 10, 70, "macro", 0.5)]
    got = read_intervals(write_intervals(items, tmp_path / "p.csv"))
    assert got == items


def test_interval_rejects_an_unknown_kind_and_a_reversed_or_negative_span() -> None:
    """Built by hand (not read from a CSV, which checks these too), a bad interval fails
    where it is made, not later as a KeyError or a division by zero (found in review)."""
    with pytest.raises(ValueError, match="kind must be 'macro' or 'micro'"):
        Interval("v", 0, 9, "MaE")
    with pytest.raises(ValueError, match="0 <= onset <= offset"):
        Interval("v", 10, 9, "macro")
    with pytest.raises(ValueError, match="0 <= onset <= offset"):
        Interval("v", -1, 9, "micro")
    assert Interval("v", 9, 9, "micro").offset == 9  # one frame is an interval


def test_intervals_hold_whole_frames_and_iou_thresholds_are_fractions() -> None:
    import numpy as np

    i = Interval("v", np.int64(3), np.int64(7), "micro", apex=np.int32(5))
    assert (i.onset, i.offset, i.apex) == (3, 7, 5) and type(i.onset) is int
    with pytest.raises(ValueError, match="v: onset must be a whole frame index, got 1.5"):
        Interval("v", 1.5, 5, "micro")
    with pytest.raises(ValueError, match="offset must be a whole frame index"):
        Interval("v", 1, 5.2, "micro")
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="iou_threshold must be in"):
            evaluate([i], [i], bad)
    assert evaluate([i], [i], 1.0).overall.tp == 1


# -- input checks found in the adversarial review -------------------------------------------


@pytest.mark.parametrize("column", ["onset", "offset"])
def test_read_intervals_refuses_a_frame_of_2_to_the_31_or_more(tmp_path: Path, column: str) -> None:
    """A huge frame was an OverflowError traceback in matching (int64 arrays); now a typed
    error naming the file, the line and the column. 2**31 - 1 is still a frame."""
    big = "999999999999999999999"
    row = {"onset": f"{big},{big}", "offset": f"1,{big}"}[column]
    p = _write(tmp_path / "big.csv", f"video,onset,offset,type\nv,0,9,micro\nv,{row},micro\n")
    with pytest.raises(EvaluationError) as exc:
        read_intervals(p)
    msg = str(exc.value)
    assert msg.startswith(f"{p}: line 3: {column} = '{big}' is too large")
    assert "below 2**31" in msg
    edge = _write(tmp_path / "edge.csv", f"video,onset,offset,type\nv,1,{2**31 - 1},micro\n")
    assert read_intervals(edge) == [I("v", 1, 2**31 - 1)]
    over = _write(tmp_path / "over.csv", f"video,onset,offset,type\nv,1,{2**31},micro\n")
    with pytest.raises(EvaluationError, match=r"line 2: offset = '2147483648' is too large"):
        read_intervals(over)


def test_intervals_at_the_frame_limit_are_scored_without_overflow() -> None:
    """Built by hand: the largest frame matches (IoU 1) and one past it is refused where
    the interval is made, not as an OverflowError in matching."""
    top = 2**31 - 1
    res = evaluate([I("v", top - 9, top)], [I("v", top - 9, top)])
    assert (res.micro.tp, res.micro.fp, res.micro.fn) == (1, 0, 0)
    with pytest.raises(ValueError, match="v: offset = 2147483648 is too large"):
        I("v", 0, 2**31)


def test_read_intervals_refuses_a_duplicated_column(tmp_path: Path) -> None:
    """csv.DictReader silently kept the last of two 'onset' columns (found in review)."""
    p = _write(tmp_path / "dup.csv", "video,onset,offset,type,Onset \nv,1,5,micro,3\n")
    with pytest.raises(EvaluationError) as exc:
        read_intervals(p)
    assert str(exc.value).startswith(f"{p}: line 1: duplicate column 'onset' (columns 2, 5)")
    # A column the reader ignores may repeat: nothing it reads is ambiguous.
    ok = _write(tmp_path / "ok.csv", "video,note,onset,offset,type,note\nv,a,1,5,micro,b\n")
    assert read_intervals(ok) == [I("v", 1, 5)]


def test_read_intervals_counts_lines_from_the_header_and_blank_lines(tmp_path: Path) -> None:
    """Errors say 'line N' of the file (header = line 1), blank lines counted: the old
    reader said 'row 2' here for what is line 4."""
    p = _write(tmp_path / "gap.csv", "video,onset,offset,type\nv,1,5,micro\n\nv,1,x,micro\n")
    with pytest.raises(EvaluationError, match=r"gap\.csv: line 4: offset = 'x' is not a whole"):
        read_intervals(p)


GT_TEXT = "video,onset,offset,type\nv,0,9,micro\nv,20,29,macro\nv,0,9,micro\nv,0,9,macro\n"


def test_read_ground_truth_keeps_repeated_rows_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Line 4 repeats line 2 (same video, onset, offset and type): kept and counted, as
    the MEGC protocol counts every annotation row, and reported. Line 5 has the same
    frames but another type: not a repeat. Predictions are not checked."""
    p = _write(tmp_path / "gt.csv", GT_TEXT)
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        gts = read_ground_truth(p)
    assert gts == [
        I("v", 0, 9, "micro"),
        I("v", 20, 29, "macro"),
        I("v", 0, 9, "micro"),
        I("v", 0, 9, "macro"),
    ]
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        f"{p} line 4 repeats line 2 (same video 'v', onset 0, offset 9 and type micro): "
        "kept, so this expression is counted twice, as the MEGC protocol counts every "
        "annotation row; if the repeat is a mistake, delete line 4 in the file"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        assert len(read_intervals(p)) == 4  # as predictions: no warning
    assert caplog.records == []
    # Four ground truths: one proposal per distinct interval finds 3 of them (the
    # repeat is one more FN: recall 3/4); a second proposal on it matches the repeat.
    once = [I("v", 0, 9, "micro"), I("v", 20, 29, "macro"), I("v", 0, 9, "macro")]
    res = evaluate(once, gts)
    assert (res.overall.tp, res.overall.fn, res.overall.recall) == (3, 1, 0.75)
    res = evaluate([*once, I("v", 0, 9, "micro")], gts)
    assert (res.overall.tp, res.overall.fp, res.overall.fn) == (4, 0, 0)


@pytest.mark.parametrize(
    "text",
    [
        "video,onset,offset,type\n",  # only the header
        "subject,video,onset,apex,offset,type\ns1,a,,,,\n",  # a video without expressions
    ],
)
def test_read_ground_truth_warns_when_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    p = _write(tmp_path / "gt.csv", text)
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        assert read_ground_truth(p) == []
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith(f"{p}: the ground truth holds no expression")
    assert "every proposal counts as a false positive" in msg
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        assert read_intervals(p) == []  # predictions: an empty file is just no proposals
    assert caplog.records == []


# Found by a mutation probe (2026-11-29): exact-boundary inputs that no test held.


def test_megc_matching_counts_the_most_pairs_even_against_identical_intervals() -> None:
    """Kills me4 (dropping the 1 / (min(P, G) + 1) scale of the IoU bonus): 5 ground
    truths in a chain, each overlapping the next by IoU 0.5; 4 proposals equal to G1..G4
    and one 10 frames before G1. Every proposal k matches G(k) at IoU 0.5 (5 TPs); the
    4 identical pairs (IoU 1) are a smaller matching that a bonus of the raw IoU prefers
    (4 x 2.0 = 8 > 5 x 1.5)."""
    gts = [Interval("v", 10 + 10 * i, 39 + 10 * i, "macro") for i in range(5)]
    preds = [Interval("v", 10 * i, 29 + 10 * i, "macro") for i in range(5)]
    r = evaluate(preds, gts)
    assert (r.macro.tp, r.macro.fp, r.macro.fn) == (5, 0, 0)


def test_authors_protocol_iou_exactly_at_the_threshold_is_a_tp() -> None:
    """Kills me7 (`>=` -> `>` in match_authors): end - start IoU of [0, 10] and [0, 5] is
    5 / 10 = 0.5, which matches ("if that IoU >= the threshold")."""
    r = evaluate([Interval("v", 0, 10, "micro")], [Interval("v", 0, 5, "micro")],
                 protocol="authors")  # fmt: skip
    assert r.micro.tp == 1


def test_read_intervals_takes_a_one_frame_interval(tmp_path: Path) -> None:
    """Kills me9 (`off < on` -> `off <= on`): onset == offset is a valid inclusive interval
    (Interval accepts it; read_ground_truth must not refuse such a row)."""
    p = tmp_path / "gt.csv"
    p.write_text("video,onset,offset,type\nv,5,5,micro\n")
    assert read_intervals(p) == [Interval("v", 5, 5, "micro")]


def test_equal_counts_match_the_larger_total_iou() -> None:
    """Found by mutation testing: with one proposal [0, 9] and ground truths [0, 7] and
    [0, 9], both matchings count one TP; the documented tie-break takes [0, 9] (IoU 1
    against 0.8) whatever the order of the ground truths."""
    g1, g2 = I("v", 0, 9), I("v", 0, 7)
    for gts in ([g2, g1], [g1, g2]):
        r = evaluate([I("v", 0, 9)], gts)
        assert r.micro.tp == 1 and r.matches[0][1] == g1


def test_an_onset_of_minus_one_is_an_evaluation_error(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("video,onset,offset,type\nv,-1,5,micro\n")
    with pytest.raises(EvaluationError, match="line 2: onset -1 is negative"):
        read_intervals(p)
