"""``spotformer demo``: end to end at a tiny scale, and its options reaching the steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_demo_runs_end_to_end_at_tiny_scale(tmp_path: Path, capsys, monkeypatch) -> None:
    import spotformer.features as F
    from spotformer.cli import main
    from spotformer.commands import train as train_cmd

    runs = []
    real_run = train_cmd.run
    monkeypatch.setattr(train_cmd, "run", lambda args: runs.append(args) or real_run(args))
    out = tmp_path / "demo"
    # 10 s: one MaE and one ME per video at the default rates (6 per minute each).
    argv = ["demo", "--out", str(out), "--subjects", "2", "--seconds", "10"]
    argv += ["--face-size", "64", "--dim", "16", "--epochs", "1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    # The demo's training, resumed once it finished: the frame counts found by opening
    # the real videos match the extracted features', so the run is reported again
    # without extracting.
    monkeypatch.setattr(F, "video_features", lambda *a, **k: pytest.fail("extracted again"))
    runs[-1].resume = True
    assert real_run(runs[-1]) == 0
    again = capsys.readouterr().out
    assert "holds a finished run" in again
    overall = [ln for ln in text.splitlines() if ln.startswith("Overall")]
    assert overall and overall == [ln for ln in again.splitlines() if ln.startswith("Overall")]
    assert "LOSO over 2 subjects" in text and "Overall" in text
    saved = json.loads((out / "run" / "config.json").read_text())
    # The demo's recipe reaches train: mirror, (k, j) from the training subjects, and
    # MaE intervals from the expression head (ME: SPEC's apex search).
    assert saved["train"]["mirror"] == 0.5 and saved["train"]["durations"] == "train"
    assert saved["train"]["spot"]["macro_mode"] == "expression"
    assert saved["train"]["spot"]["micro_mode"] == "apex"
    report = json.loads((out / "run" / "report.json").read_text())
    gt = sum(1 for _ in (out / "run" / "ground_truth.csv").open()) - 1
    assert gt == 4  # 2 subjects x 1 video x (1 MaE + 1 ME)
    assert report["overall"]["tp"] + report["overall"]["fn"] == gt


def test_demo_options_and_data_reuse(tmp_path: Path, capsys, monkeypatch) -> None:
    from spotformer.cli import main
    from spotformer.commands import train as train_cmd

    calls = []
    monkeypatch.setattr(train_cmd, "run", lambda args: calls.append(args) or 0)
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--subjects", "2", "--videos-per-subject", "2"]
    argv += ["--seconds", "1", "--expr-gap", "12"]
    assert main(argv) == 0
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["config"]["videos_per_subject"] == 2 and len(manifest["videos"]) == 4
    args = calls[-1]
    assert (args.macro_spotting, args.micro_spotting, args.expr_gap) == ("expression", "apex", 12)
    assert (args.mirror, args.durations, args.root) == (0.5, "train", out / "data")
    assert "rendering" in capsys.readouterr().out
    # A second run with the same preset reuses the rendered data.
    assert main([*argv, "--macro-spotting", "apex"]) == 0
    assert "reusing the synthetic data" in capsys.readouterr().out
    assert calls[-1].macro_spotting == "apex"


def test_demo_replaces_only_a_previous_run(tmp_path: Path, capsys, monkeypatch) -> None:
    from spotformer.cli import main
    from spotformer.commands import train as train_cmd

    monkeypatch.setattr(train_cmd, "run", lambda args: 0)
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--subjects", "2", "--seconds", "1"]
    # A user's file in OUT/run: refused before rendering, nothing deleted.
    (out / "run").mkdir(parents=True)
    (out / "run" / "mine.txt").write_text("keep")
    (out / "run" / "config.json").write_text("{}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "mine.txt" in err and "another --out" in err
    assert (out / "run" / "mine.txt").read_text() == "keep" and not (out / "data").exists()
    # So is a --dim that train would refuse only after the rendering.
    assert main([*argv, "--dim", "30"]) == 2
    assert "--dim must be a multiple of 4" in capsys.readouterr().err
    assert not (out / "data").exists()
    # And every other option train checks, and LOSO's 2 subjects (found in review:
    # `--epochs 0` rendered the data set, then failed).
    for extra, says in [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--lr", "-1"], "--lr"),
        (["--batch-size", "0"], "--batch-size"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--mirror", "2"], "--mirror"),
        (["--subjects", "1"], "--subjects 1: leave-one-subject-out needs at least 2 subjects"),
    ]:
        assert main([*argv, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (extra, err)
        assert not (out / "data").exists(), extra
    # A previous run's files (and a killed write's temp file) are replaced.
    # Hidden names like a temp file's are the user's too unless they are a run's own.
    (out / "run" / "mine.txt").unlink()
    for mine in (".tmp", ".notes.tmpl"):
        (out / "run" / mine).write_text("keep")
        assert main(argv) == 2 and mine in capsys.readouterr().err
        (out / "run" / mine).unlink()
    (out / "run" / "folds" / "s1").mkdir(parents=True)
    (out / "run" / ".report.json.tmp").write_text("")
    assert main(argv) == 0
    assert not (out / "run").exists()  # train (stubbed here) makes it afresh


def test_demo_renders_only_into_its_own_data(tmp_path: Path, capsys, monkeypatch) -> None:
    """Found in review: the demo replaced a user's own ``OUT/data/annotations.csv``
    without a word, and a video length too short for the preset was a traceback."""
    from spotformer.cli import main
    from spotformer.commands import train as train_cmd
    from spotformer.data.synthetic import SyntheticConfig, make_synthetic

    monkeypatch.setattr(train_cmd, "run", lambda args: 0)
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--subjects", "2", "--seconds", "1"]
    data = out / "data"
    data.mkdir(parents=True)
    (data / "annotations.csv").write_text("mine")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "annotations.csv" in err and "another --out" in err and "Traceback" not in err
    assert (data / "annotations.csv").read_text() == "mine" and not (out / "run").exists()
    # A data set of other settings that make-synthetic rendered there: refused too.
    (data / "annotations.csv").unlink()
    other = SyntheticConfig(subjects=2, videos_per_subject=1, seconds=1.5, seed=0)
    make_synthetic(data, other, progress=False)
    before = (data / "manifest.json").read_text()
    assert main(argv) == 2
    assert "did not render" in capsys.readouterr().err
    assert (data / "manifest.json").read_text() == before
    # The demo's own render of other settings is replaced.
    (data / ".spotformer-demo").touch()
    assert main(argv) == 0
    assert json.loads((data / "manifest.json").read_text())["config"]["seconds"] == 1.0
    capsys.readouterr()
    # OUT/data a file: one line, the file kept.
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "data").write_text("mine")
    assert main(["demo", "--out", str(tmp_path / "f"), "--subjects", "2", "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "Traceback" not in err
    assert (tmp_path / "f" / "data").read_text() == "mine"
    # Settings the preset cannot render: one line naming the option, nothing touched.
    for seconds, says in [
        ("0", "--seconds 0.0: must be a positive number"),
        ("6", "raise --seconds"),
    ]:
        args = ["demo", "--out", str(tmp_path / "short"), "--subjects", "3", "--seconds", seconds]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
        assert not any((tmp_path / "short").glob("data/*"))
