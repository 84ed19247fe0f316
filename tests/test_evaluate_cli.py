"""``spotformer evaluate`` against hand-computed counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from spotformer.cli import main

GT = """video,onset,offset,type
a,0,9,macro
a,50,99,macro
a,200,210,micro
b,10,14,micro
b,40,44,micro
"""

# Hand counts, IoU >= 0.5:
#   macro: [2,9] vs [0,9] 8/10 TP; [60,140] vs [50,99] 40/91 FP; [300,320] FP -> 1/2/1
#   micro: [200,209] 10/11 TP; [201,210] second proposal on the same GT -> FP;
#          [10,12] vs [10,14] 3/5 TP; [44,48] vs [40,44] touching-ish 1/9 FP -> 2/2/1
PRED = """video,onset,offset,type,score
a,2,9,macro,0.9
a,60,140,macro,0.8
a,300,320,macro,0.1
a,200,209,micro,0.7
a,201,210,micro,0.6
b,10,12,micro,0.5
b,44,48,micro,0.4
"""


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text(GT)
    pred.write_text(PRED)
    return pred, gt


def test_json_output_matches_hand_counts(files, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = files
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {
        "macro",
        "micro",
        "overall",
        "iou",
        "protocol",
        "stride",
        "proposals",
        "ground_truths",
    }
    assert (out["proposals"], out["ground_truths"]) == (7, 5)  # TP + FP, TP + FN
    assert out["stride"] is None  # a CSV: its frames are taken as they are
    assert {k: out["macro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 2, "fn": 1}
    assert {k: out["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 2, "fn": 1}
    assert {k: out["overall"][k] for k in ("tp", "fp", "fn")} == {"tp": 3, "fp": 4, "fn": 2}
    assert out["macro"]["f1"] == pytest.approx(2 / (3 + 2))
    assert out["micro"]["f1"] == pytest.approx(4 / (4 + 3))
    assert out["overall"]["f1"] == pytest.approx(6 / (7 + 5))
    assert out["overall"]["precision"] == pytest.approx(3 / 7)
    assert out["overall"]["recall"] == pytest.approx(3 / 5)


def test_table_output(files, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = files
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.strip()}
    assert lines["MaE"][:3] == ["1", "2", "1"]
    assert lines["ME"][:3] == ["2", "2", "1"]
    assert lines["Overall"][:3] == ["3", "4", "2"]
    assert lines["Overall"][-1] == f"{6 / 12:.4f}"


def test_iou_option_changes_the_count(files, capsys: pytest.CaptureFixture[str]) -> None:
    pred, gt = files
    # At IoU >= 0.4 the macro proposal [60, 140] (IoU 40/91 = 0.44) becomes a TP.
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--iou", "0.4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["macro"]["tp"], out["macro"]["fp"], out["macro"]["fn"]) == (2, 1, 0)


def test_stride_with_a_csv_is_said_to_do_nothing(files, capsys) -> None:
    """Found in review: --stride with an interval CSV was ignored without a word."""
    pred, gt = files
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", "--stride", "7"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["overall"] == want["overall"]
    assert f"note: --stride 7 converts a workbook's frames; {gt} is an interval CSV" in err


def test_authors_protocol_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # [0, 9] on [0, 4]: inclusive IoU 5/10 = 0.5 (a TP), end - start 4/9 (not).
    gt = tmp_path / "gt.csv"
    gt.write_text("video,onset,offset,type\nv,0,4,micro\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("video,onset,offset,type\nv,0,9,micro\n")
    argv = ["evaluate", "--pred", str(pred), "--gt", str(gt)]
    assert main([*argv, "--json"]) == 0
    megc = json.loads(capsys.readouterr().out)
    assert (megc["micro"]["tp"], megc["protocol"], megc["iou"]) == (1, "megc", 0.5)
    assert main([*argv, "--json", "--protocol", "authors"]) == 0
    authors = json.loads(capsys.readouterr().out)
    assert (authors["micro"]["tp"], authors["protocol"]) == (0, "authors")
    assert main([*argv, "--protocol", "authors"]) == 0
    assert "the authors' protocol" in capsys.readouterr().out


def test_empty_prediction_file(tmp_path: Path, files, capsys: pytest.CaptureFixture[str]) -> None:
    _, gt = files
    empty = tmp_path / "empty.csv"
    empty.write_text("video,onset,offset,type\n")
    assert main(["evaluate", "--pred", str(empty), "--gt", str(gt), "--json"]) == 0
    io = capsys.readouterr()
    out = json.loads(io.out)
    assert out["overall"] == {"tp": 0, "fp": 0, "fn": 5, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # said (found in review: a header-only file was scored without a word)
    assert io.err == (
        f"spotformer evaluate: note: {empty} has no predictions; every expression of the "
        "ground truth (5) counts as an FN\n"
    )


def test_bad_file_exits_2_and_names_it(tmp_path: Path, files, capsys) -> None:
    _, gt = files
    bad = tmp_path / "bad.csv"
    bad.write_text("video,start,end,type\nv,1,2,micro\n")
    assert main(["evaluate", "--pred", str(bad), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "missing column" in err


def test_bad_iou_exits_2(files, capsys) -> None:
    pred, gt = files
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--iou", "0"]) == 2
    assert "--iou" in capsys.readouterr().err


def test_prediction_videos_without_ground_truth_are_reported(tmp_path: Path, files, capsys) -> None:
    """Ids that match nothing (spot's default id is the file stem) score 0: warned."""
    _, gt = files
    pred = tmp_path / "p.csv"
    pred.write_text("video,onset,offset,type\nclip_stem,1,5,micro\n")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    err = capsys.readouterr().err
    assert "none of the 1 prediction videos ('clip_stem') is in the ground truth" in err
    assert "--video-id" in err


def test_a_video_listed_without_expressions_is_not_an_unknown_id(tmp_path: Path, capsys) -> None:
    """The annotation CSV lists a video without expressions with empty frame columns: a
    proposal there is an FP of a known video, not a mistyped id (found in review)."""
    gt = tmp_path / "gt.csv"
    gt.write_text("subject,video,onset,apex,offset,type\ns1,a,10,12,20,macro\ns2,b,,,,\n")
    pred = tmp_path / "p.csv"
    pred.write_text("video,onset,offset,type\nb,5,9,micro\nzz,1,2,micro\n")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "1 of 2 prediction videos are not in the ground truth ('zz')" in err
    assert "names a video without expressions in a row with its video and no onset" in err
    # 'a' is annotated and has no predictions: its expression is an FN, said in a note
    # (found in review: one video's `spot` CSV scored every other video's silently).
    assert "note: 1 of 1 annotated videos have no predictions ('a'); their expressions" in err
    assert "'b'" not in err
    counts = json.loads(out)
    assert counts["micro"]["fp"] == 2 and counts["macro"]["fn"] == 1
    pred.write_text("video,onset,offset,type\na,10,20,macro\n")  # every annotated video
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert "no predictions" not in capsys.readouterr().err


def test_ground_truth_from_the_data_sets_workbooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--gt takes CAS(ME)^2's and SAMM-LV's .xlsx as training reads them (0-based frames,
    SAMM-LV's divided by 7). CAS(ME)^2 ground truth (0-based, test_annotations):
    s15/15_0101 macro 556-607 and micro 999-1009, s16/16_0102 macro 200-229,
    s16/16_0401 micro 299-310, s15/15_0502 macro 49-59 (its apex past its offset: kept),
    s16/16_0502 macro 89-98. Hand counts, IoU >= 0.5: macro 556-607 TP (1), 210-229 TP
    (20/30); micro 999-1004 TP (6/11), 305-330 FP (6/32); s15/15_0502 and s16/16_0502
    FN -> macro 2/0/2, micro 1/1/1."""
    from test_annotations import SAMM_EXPECTED_7, write_casme2, write_samm

    cas = write_casme2(tmp_path / "CAS(ME)^2code_final.xlsx")
    pred = tmp_path / "pred.csv"
    pred.write_text(
        "video,onset,offset,type\n"
        "s15/15_0101,556,607,macro\ns16/16_0102,210,229,macro\n"
        "s15/15_0101,999,1004,micro\ns16/16_0401,305,330,micro\n"
    )
    assert main(["evaluate", "--pred", str(pred), "--gt", str(cas), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stride"] == 1
    assert {k: out["macro"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 0, "fn": 2}
    assert {k: out["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 1, "fn": 1}
    # SAMM-LV: its expressions themselves, at 1/7 of the source frames, are all TPs.
    samm = write_samm(tmp_path / "SAMM_LongVideos_V2_Release.xlsx")
    rows = [f"{e.video},{e.onset},{e.offset},{e.kind}" for e in SAMM_EXPECTED_7]
    pred.write_text("video,onset,offset,type\n" + "\n".join(rows) + "\n")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(samm), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["overall"]
    assert out["tp"] == len(SAMM_EXPECTED_7) and out["fp"] == out["fn"] == 0
    assert main(["evaluate", "--pred", str(pred), "--gt", str(samm), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stride"] == 7  # the one used, not null
    # --stride 1 (predictions of 'spotformer spot --stride 1' on a SAMM-LV folder): the
    # workbook at 1-based source frames minus 1 (hand values: 006_1 macro 566-743 ->
    # 565-742, micro 1200.5-1260 -> 1200-1259). The stride-7 predictions above then
    # match nothing, and these two match.
    pred.write_text(
        "video,onset,offset,type\n006_1,565,742,macro\n006_1,1200,1259,micro\n007_3,14,15,micro\n"
    )
    assert (
        main(["evaluate", "--pred", str(pred), "--gt", str(samm), "--stride", "1", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["stride"] == 1
    assert (out["overall"]["tp"], out["overall"]["fp"]) == (2, 1)
    assert out["overall"]["fn"] == len(SAMM_EXPECTED_7) - 2
    assert main(["evaluate", "--pred", str(pred), "--gt", str(samm), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["tp"] == 1  # only 007_3 14-15
    # CAS(ME)^2's frames are every frame: another stride is refused, not mis-scored.
    assert main(["evaluate", "--pred", str(pred), "--gt", str(cas), "--stride", "2"]) == 2
    err = capsys.readouterr().err
    assert str(cas) in err and "stride 1" in err and "Traceback" not in err
    assert main(["evaluate", "--pred", str(pred), "--gt", str(cas), "--stride", "1"]) == 0
    capsys.readouterr()
    # A workbook that is not one: a one-line error naming it.
    bad = tmp_path / "notes.xlsx"
    bad.write_bytes(b"not a workbook\n")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


def test_huge_frames_exit_2_naming_file_line_and_column(tmp_path: Path, files, capsys) -> None:
    """Offset 999999999999999999999 was an OverflowError traceback (exit 1); a CAS(ME)^2
    workbook with offset 10**30 too (found in review)."""
    pred, gt = files
    big = tmp_path / "big.csv"
    big.write_text("video,onset,offset,type\na,0,9,macro\na,1,999999999999999999999,micro\n")
    assert main(["evaluate", "--pred", str(big), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert f"{big}: line 3: offset = '999999999999999999999' is too large" in err
    assert "Traceback" not in err
    from test_annotations import CAS_ROWS, write_casme2

    rows = [list(r) for r in CAS_ROWS]
    rows[0][4] = 10**30
    cas = write_casme2(tmp_path / "CAS(ME)^2code_final.xlsx", rows=rows)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(cas)]) == 2
    err = capsys.readouterr().err
    assert f"{cas}: sheet 'CASFEcode_final' row 1: offset (column E) = 1e+30 is too large" in err


def test_duplicated_column_exits_2(tmp_path: Path, files, capsys) -> None:
    pred, _ = files
    gt = tmp_path / "gt.csv"
    gt.write_text("video,onset,offset,type,onset\na,0,9,macro,50\n")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 2
    assert f"{gt}: line 1: duplicate column 'onset'" in capsys.readouterr().err


def test_repeated_ground_truth_row_is_counted_and_reported(
    tmp_path: Path, files, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    """GT with line 7 repeating line 2 (a,0,9,macro): kept and counted, as the MEGC
    protocol counts every annotation row (and training's loaders do), with a warning.
    Hand counts (the ones above plus the repeat):
      macro: G = 3 ([0,9] twice, [50,99]); [2,9] TP on one [0,9]; [60,140], [300,320]
             FP; the other [0,9] and [50,99] FN -> 1/2/2, F1 = 2 / (3 + 3) = 1/3
      micro: unchanged -> 2/2/1
      overall: 3/4/3, G = 6: recall 3/6, precision 3/7, F1 = 6 / (7 + 6) = 6/13
    With prediction line 2 (a,2,9,macro) given twice, the second copy matches the
    repeated ground truth instead of being an FP: macro 2/2/1."""
    pred, _ = files
    gt = tmp_path / "gt_dup.csv"
    gt.write_text(GT + "a,0,9,macro\n")
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out["macro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 2, "fn": 2}
    assert {k: out["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 2, "fn": 1}
    assert {k: out["overall"][k] for k in ("tp", "fp", "fn")} == {"tp": 3, "fp": 4, "fn": 3}
    assert out["macro"]["f1"] == pytest.approx(1 / 3)
    assert out["overall"]["recall"] == pytest.approx(3 / 6)
    assert out["overall"]["precision"] == pytest.approx(3 / 7)
    assert out["overall"]["f1"] == pytest.approx(6 / 13)
    assert [r.getMessage() for r in caplog.records] == [
        f"{gt} line 7 repeats line 2 (same video 'a', onset 0, offset 9 and type macro): "
        "kept, so this expression is counted twice, as the MEGC protocol counts every "
        "annotation row; if the repeat is a mistake, delete line 7 in the file"
    ]
    pred.write_text(PRED + "a,2,9,macro,0.9\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out["macro"][k] for k in ("tp", "fp", "fn")} == {"tp": 2, "fp": 2, "fn": 1}
    # Only the ground truth's repeat is reported, not the predictions'.
    assert [r.getMessage() for r in caplog.records if "repeats" in r.getMessage()] == [
        f"{gt} line 7 repeats line 2 (same video 'a', onset 0, offset 9 and type macro): "
        "kept, so this expression is counted twice, as the MEGC protocol counts every "
        "annotation row; if the repeat is a mistake, delete line 7 in the file"
    ]


def test_empty_ground_truth_is_warned(
    tmp_path: Path, files, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    pred, _ = files
    gt = tmp_path / "empty_gt.csv"
    gt.write_text("video,onset,offset,type\n")
    with caplog.at_level(logging.WARNING, logger="spotformer.metrics"):
        assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["overall"]["fp"], out["overall"]["f1"]) == (7, 0.0)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith(f"{gt}: the ground truth holds no expression")
