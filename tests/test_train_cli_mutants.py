"""``spotformer train`` / ``demo`` / ``make-synthetic``: options reaching the configs,
SPEC's defaults, the checks made before any data is read, and the files and exit codes
of the commands. Found by mutation testing of ``spotformer/commands/``: each test fails
on a plausible bug (an option parsed but not passed on, a default that differs from
SPEC or the docs, a check dropped) that the end-to-end tests let through. No test here
trains or extracts: the expensive steps are replaced where a test is about plumbing."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from spotformer.commands import demo as demo_cmd
from spotformer.commands import train as train_cmd

# -- spotformer train: options -> TrainConfig / SWMROConfig ----------------------------------


def _train_args(*argv: str, dataset: str = "csv") -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    return parser.parse_args(["--dataset", dataset, "--root", "r", "--out", "o", *argv])


def _configs(*argv: str, dataset: str = "csv"):
    made = train_cmd.configs(_train_args(*argv, dataset=dataset))
    assert not isinstance(made, str), made
    return made


def test_train_defaults_are_specs() -> None:
    """SPEC sections 3-5: D 256 (4 heads of 64, MLP 256), Simul-ST, lr 2e-4, 100 epochs,
    batch 512, lambda 0.005, m 0.5 (0.55 for SAMM-LV), P_apex > 0.5, SPEC's (k, j), a
    fixed epoch (no selection on the test subject), and the documented defaults of the
    options SPEC leaves open (every frame trained on, bfloat16 autocast on CUDA)."""
    cfg, sw = _configs(dataset="casme2")
    m = cfg.model
    assert (m.variant, m.dim, m.heads, m.head_dim, m.mlp_dim) == ("simul-st", 256, 4, 64, 256)
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (100, 512, 2e-4)
    assert (cfg.selection, cfg.durations, cfg.spot.apex_threshold) == ("fixed", "spec", 0.5)
    assert (cfg.loss.contrastive, cfg.loss.macro_ratio) == (0.005, 0.5)
    assert (cfg.neutral_segments, cfg.mirror, cfg.seed) == (1.0, 0.0, 0)
    assert (cfg.amp, cfg.amp_dtype) == (True, "bfloat16")
    assert cfg.loss.normalize_features and cfg.loss.supcon_form == "khosla"
    assert sw.device == "cpu" and sw.window == 17 and not sw.align_from_landmarks
    samm, _ = _configs(dataset="samm")
    assert samm.loss.macro_ratio == 0.55  # SPEC 4: m = 0.55 for SAMM-LV


def test_train_options_reach_the_configs() -> None:
    """Every training option given on the command line is the config's value (not the
    default), and the model keeps SPEC's 4 heads of D/4 with an MLP of D."""
    cfg, sw = _configs(
        "--variant", "seq-st", "--dim", "48", "--epochs", "3", "--batch-size", "16",
        "--lr", "0.003", "--selection", "val", "--val-subjects", "2", "--durations", "train",
        "--apex-threshold", "0.3", "--neutral-segments", "0.25", "--mirror", "0.4",
        "--seed", "7", "--amp", "float16", "--macro-ratio", "0.7", "--supcon", "authors",
        "--supcon-weight", "0.02", "--face-size", "192", "--align-from-landmarks",
        "--macro-spotting", "expression", "--expr-gap", "9",
    )  # fmt: skip
    m = cfg.model
    assert (m.variant, m.dim, m.heads, m.head_dim, m.mlp_dim) == ("seq-st", 48, 4, 12, 48)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == (3, 16, 0.003, 7)
    assert (cfg.selection, cfg.val_subjects, cfg.durations) == ("val", 2, "train")
    assert (cfg.neutral_segments, cfg.mirror) == (0.25, 0.4)
    assert (cfg.amp, cfg.amp_dtype) == (True, "float16")
    loss = cfg.loss
    assert (loss.macro_ratio, loss.contrastive) == (0.7, 0.02)
    assert (loss.normalize_features, loss.base_temperature, loss.supcon_form) == (
        False, 0.07, "authors",
    )  # fmt: skip
    spot = cfg.spot
    assert (spot.apex_threshold, spot.macro_mode, spot.expr_gap) == (0.3, "expression", 9)
    assert sw.face_size == 192 and sw.align_from_landmarks
    off, _ = _configs("--amp", "off")
    assert not off.amp


def test_train_macro_ratio_zero_is_kept() -> None:
    """--macro-ratio 0 (ME terms only) is a value, not "not given": it must not fall
    back to the data set's m."""
    for dataset in ("casme2", "samm"):
        cfg, _ = _configs("--macro-ratio", "0", dataset=dataset)
        assert cfg.loss.macro_ratio == 0.0


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--supcon-weight", "inf"], "--supcon-weight must be a finite number >= 0, got inf"),
        (["--supcon-weight", "-0.1"], "--supcon-weight must be a finite number >= 0, got -0.1"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--dim", "2"], "--dim must be a multiple of 4 (4 attention heads of D/4), got 2"),
        (["--neutral-segments", "2"], "--neutral-segments must be in [0, 1], got 2.0"),
        (["--val-subjects", "0", "--selection", "val"], "--val-subjects"),
    ],
)
def test_train_bad_values_are_refused_as_options(argv: list[str], said: str) -> None:
    got = train_cmd.configs(_train_args(*argv))
    assert isinstance(got, str) and got.startswith(said), got


def test_train_supcon_weight_zero_turns_the_term_off() -> None:
    cfg, _ = _configs("--supcon-weight", "0")
    assert cfg.loss.contrastive == 0.0


def test_train_features_must_be_a_folder(tmp_path: Path) -> None:
    afile = tmp_path / "feats.npy"
    afile.write_bytes(b"")
    got = train_cmd.configs(_train_args("--features", str(afile)))
    assert isinstance(got, str) and f"--features {afile}: not a folder" in got
    cfg, _ = _configs("--features", str(tmp_path))  # a folder: accepted


def test_train_gpu_needs_cuda_and_then_extracts_on_it(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    got = train_cmd.configs(_train_args("--gpu"))
    assert isinstance(got, str) and got.startswith("--gpu given but no CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _, sw = _configs("--gpu")
    assert sw.device == "cuda"


# -- spotformer train: run() with the data and training replaced -------------------------------


@pytest.fixture()
def stub_data(tmp_path: Path, monkeypatch):
    """A 3-subject CSV data set whose opening, extraction and training are replaced:
    ``plan`` (video -> PlannedVideo field overrides) shapes what opening the videos
    finds; training records what it was given, then stops with a TrainError."""
    import spotformer.features as F
    import spotformer.train as T

    csv = tmp_path / "data" / "ann.csv"
    csv.parent.mkdir()
    rows = ["subject,video,onset,apex,offset,type,path,fps"]
    rows += [f"s{i},v{i},20,24,40,macro,v{i}.mp4,30" for i in range(3)]
    csv.write_text("\n".join(rows) + "\n")
    overrides: dict[str, dict] = {}
    seen: dict = {}

    def plan(table, window):  # noqa: ANN001, ANN202
        out = {}
        for name, ref in sorted(table.sources.items()):
            got = F.PlannedVideo(ref, f"s{name[1:]}", 64, 30.0, 30.0)
            out[name] = dataclasses.replace(got, **overrides.get(name, {}))
        return out

    def features(table, config=None, progress=True, plan=None, **_):  # noqa: ANN001, ANN202
        names = sorted(table.sources)
        return F.FeatureSet(
            {n: torch.zeros(64, 17, 10, 2) for n in names},
            {n: 30.0 for n in names},
            {n: f"s{n[1:]}" for n in names},
        )

    def run_loso(data, cfg, out, resume=False, progress=True, info=None):  # noqa: ANN001, ANN202
        seen.update(cfg=cfg, out=out, info=info, threads=torch.get_num_threads())
        raise T.TrainError("stopped by the test")

    monkeypatch.setattr(F, "plan_videos", plan)
    monkeypatch.setattr(F, "dataset_features", features)
    monkeypatch.setattr(T, "run_loso", run_loso)
    return csv, overrides, seen


def test_train_records_an_absolute_root_and_trains_on_the_threads_given(
    tmp_path: Path, stub_data, monkeypatch, capsys
) -> None:
    """The run record names the data set folder absolutely (a resume from another
    folder compares it), and training runs on --threads."""
    from spotformer.cli import main

    csv, _, seen = stub_data
    monkeypatch.chdir(csv.parent)
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    try:
        argv = ["train", "--dataset", "csv", "--root", csv.name, "--out", str(tmp_path / "run")]
        assert main([*argv, "--no-progress", "--threads", str(want)]) == 2
        assert "stopped by the test" in capsys.readouterr().err
        assert seen["threads"] == want and seen["info"]["threads"] == want
    finally:
        torch.set_num_threads(before)
    assert seen["info"]["root"] == str(csv.resolve())
    assert seen["out"] == tmp_path / "run"


def test_train_records_no_stride_or_source_rate_where_videos_differ(
    tmp_path: Path, stub_data, capsys
) -> None:
    """`spot` opens a new video at the recorded stride and source rate: where the
    training videos differ in either, none is recorded (not one of them, not 1)."""
    from spotformer.cli import main

    csv, overrides, seen = stub_data
    argv = ["train", "--dataset", "csv", "--root", str(csv), "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert (seen["info"]["stride"], seen["info"]["source_fps"]) == (1, 30.0)  # all alike
    overrides["v0"] = {"source_fps": 60.0}  # one video at 60 fps, still 30 after its stride
    overrides["v1"] = {"source_fps": 60.0}
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    assert seen["info"]["source_fps"] is None and seen["info"]["fps"] == 30.0
    from spotformer.data.table import VideoRef

    ref = VideoRef(csv.parent / "v2.mp4", 30.0, 2, "s2")
    overrides["v2"] = {"ref": ref}
    assert main([*argv, "--out", str(tmp_path / "c")]) == 2
    assert seen["info"]["stride"] is None
    capsys.readouterr()


def test_train_refuses_a_bad_out_before_reading_the_data_set(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """--out that is a file is refused before the annotations are read and the videos
    opened (on a real data set, opening every video takes minutes)."""
    import spotformer.features as F
    from spotformer.cli import main

    monkeypatch.setattr(F, "load_dataset", lambda *a: pytest.fail("the data set was read"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["train", "--dataset", "csv", "--root", str(tmp_path / "none"), "--out", str(afile)]
    assert main(argv) == 2
    assert f"{afile} is a file" in capsys.readouterr().err


def test_train_val_subjects_without_val_selection_is_noted(tmp_path: Path, capsys) -> None:
    from spotformer.cli import main

    afile = tmp_path / "afile"
    afile.write_text("x")
    argv = ["train", "--dataset", "csv", "--root", str(tmp_path), "--out", str(afile)]
    assert main([*argv, "--val-subjects", "3"]) == 2
    assert "--val-subjects applies only with --selection val" in capsys.readouterr().err


def test_a_resume_on_another_thread_count_trains_on_the_count_given(tmp_path: Path, capsys) -> None:
    """--threads on a resume is used (with a warning that the float sums differ), not
    the saved run's count; without it the saved count is."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"info": {"threads": 3}}))
    args = _train_args("--resume", "--threads", "2")
    args.out = run
    assert train_cmd._training_threads(args) == 2
    assert "the run started on 3 CPU thread(s); on 2" in capsys.readouterr().err
    args.threads = None
    assert train_cmd._training_threads(args) == 3


# -- spotformer demo ---------------------------------------------------------------------------


@pytest.fixture()
def demo_stubs(monkeypatch):
    """The demo with its render and training replaced: ``calls`` records the
    SyntheticConfig rendered and the train arguments; ``rc`` is training's exit code."""
    import spotformer.data.synthetic as S

    calls: dict = {"render": [], "train": [], "rc": 0}

    def render(out_dir, config, progress=True, overwrite=False):  # noqa: ANN001, ANN202
        calls["render"].append(config)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "manifest.json").write_text(json.dumps({"config": config.to_json()}))
        return {"videos": []}

    monkeypatch.setattr(S, "make_synthetic", render)
    monkeypatch.setattr(train_cmd, "run", lambda args: calls["train"].append(args) or calls["rc"])
    return calls


def test_demo_defaults_are_the_documented_preset_and_recipe(tmp_path: Path, demo_stubs) -> None:
    """demo.py and docs/spotformer.md: 6 subjects x 1 video x 20 s, SW-MRO at 128 px,
    D 32, 6 epochs of batch 32 at lr 2e-3, every frame, (k, j) from the training
    subjects, mirror 0.5, one thread, seed 0, CPU."""
    from spotformer.cli import main

    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    (config,) = demo_stubs["render"]
    assert (config.subjects, config.videos_per_subject, config.seconds, config.seed) == (
        6, 1, 20.0, 0,
    )  # fmt: skip
    (a,) = demo_stubs["train"]
    assert (a.dataset, a.root, a.out) == (
        "synthetic",
        tmp_path / "d" / "data",
        tmp_path / "d" / "run",
    )
    assert (a.face_size, a.dim, a.epochs, a.batch_size, a.lr) == (128, 32, 6, 32, 2e-3)
    assert (a.neutral_segments, a.durations, a.mirror, a.threads, a.seed) == (
        1.0, "train", 0.5, 1, 0,
    )  # fmt: skip
    assert not a.gpu and a.macro_spotting == "expression"


def test_demo_options_reach_the_render_and_training(
    tmp_path: Path, demo_stubs, monkeypatch
) -> None:
    from spotformer.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    argv = ["demo", "--out", str(tmp_path / "d"), "--subjects", "3", "--videos-per-subject", "2"]
    argv += ["--seconds", "12", "--seed", "4", "--face-size", "96", "--dim", "24"]
    argv += ["--epochs", "2", "--batch-size", "8", "--lr", "0.01", "--neutral-segments", "0.5"]
    argv += ["--durations", "spec", "--threads", "2", "--mirror", "0.25", "--gpu"]
    assert main(argv) == 0
    (config,) = demo_stubs["render"]
    assert (config.subjects, config.videos_per_subject, config.seconds, config.seed) == (
        3, 2, 12.0, 4,
    )  # fmt: skip
    (a,) = demo_stubs["train"]
    assert (a.face_size, a.dim, a.epochs, a.batch_size, a.lr, a.seed) == (96, 24, 2, 8, 0.01, 4)
    assert (a.neutral_segments, a.durations, a.threads, a.mirror, a.gpu) == (
        0.5, "spec", 2, 0.25, True,
    )  # fmt: skip
    made = train_cmd.configs(a)
    assert not isinstance(made, str) and made[1].device == "cuda"


def test_demo_exit_code_is_trainings(tmp_path: Path, demo_stubs) -> None:
    """A training that fails makes the demo fail (`make demo` in CI must see it)."""
    from spotformer.cli import main

    demo_stubs["rc"] = 2
    argv = ["demo", "--out", str(tmp_path / "d"), "--subjects", "2", "--seconds", "10"]
    assert main(argv) == 2
    demo_stubs["rc"] = 0
    assert main(argv) == 0


def test_demo_restarts_its_killed_render(tmp_path: Path, demo_stubs, capsys) -> None:
    """A render killed before it marked the data set as the demo's (the generator's
    unfinished marker and its folders only) is rendered again, not refused."""
    from spotformer.cli import main
    from spotformer.data.synthetic import UNFINISHED

    data = tmp_path / "d" / "data"
    (data / "rawvideo" / "s15").mkdir(parents=True)
    (data / UNFINISHED).write_bytes(b"")
    argv = ["demo", "--out", str(tmp_path / "d"), "--subjects", "2", "--seconds", "10"]
    assert main(argv) == 0, capsys.readouterr().err
    assert len(demo_stubs["render"]) == 1 and "rendering" in capsys.readouterr().out


def test_demo_run_folder_that_is_a_file_is_refused(tmp_path: Path, demo_stubs, capsys) -> None:
    from spotformer.cli import main

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "run").write_text("mine")
    argv = ["demo", "--out", str(tmp_path / "d"), "--subjects", "2", "--seconds", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'd' / 'run'} is a file; choose another --out" in err
    assert (tmp_path / "d" / "run").read_text() == "mine" and demo_stubs["render"] == []


def test_demo_marks_its_render_and_renders_other_settings_over_it(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A real render: the demo marks the data as its own, so a rerun with other
    settings replaces it (instead of refusing the demo's own data as a user's)."""
    from spotformer.cli import main

    monkeypatch.setattr(train_cmd, "run", lambda args: 0)
    out = tmp_path / "d"
    argv = ["demo", "--out", str(out), "--subjects", "2", "--seconds", "1"]
    assert main(argv) == 0
    assert (out / "data" / demo_cmd.DEMO_DATA).is_file()
    capsys.readouterr()
    assert main([*argv[:-1], "1.5"]) == 0, capsys.readouterr().err
    assert json.loads((out / "data" / "manifest.json").read_text())["config"]["seconds"] == 1.5


@pytest.mark.parametrize("manifest", ["x\n", "", "[1, 2]\n"])
def test_demo_a_manifest_that_is_not_the_generators_is_refused_not_a_traceback(
    tmp_path: Path, demo_stubs, capsys, manifest: str
) -> None:
    """Found in review: a ``manifest.json`` that is not JSON (a user's file, an empty
    one) or not an object raised a traceback; it is not the demo's data set, so the
    folder is refused as any other user's data, and left as it was."""
    from spotformer.cli import main

    data = tmp_path / "d" / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text(manifest)
    argv = ["demo", "--out", str(tmp_path / "d"), "--subjects", "2", "--seconds", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"spotformer demo: {data} holds" in err and "manifest.json" in err
    assert (data / "manifest.json").read_text() == manifest and demo_stubs["render"] == []


def test_demo_out_starting_with_a_dash_is_a_folder(tmp_path: Path, demo_stubs, monkeypatch) -> None:
    """Found in review: ``--out=-d`` was passed on to training as ``--root -d/data``,
    which argparse read as an option ("expected one argument")."""
    from spotformer.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--out=-d", "--subjects", "2", "--seconds", "10"]) == 0
    (a,) = demo_stubs["train"]
    assert (a.root, a.out) == (Path("-d") / "data", Path("-d") / "run")
    assert (tmp_path / "-d" / "data" / "manifest.json").is_file()


# -- spotformer make-synthetic ------------------------------------------------------------------


@pytest.fixture()
def synth_stub(monkeypatch):
    import spotformer.data.synthetic as S

    seen: dict = {"videos": []}

    def render(out_dir, config, progress=True, overwrite=False):  # noqa: ANN001, ANN202
        seen.update(config=config, progress=progress, overwrite=overwrite)
        return {"videos": seen["videos"]}

    monkeypatch.setattr(S, "make_synthetic", render)
    return seen


def test_make_synthetic_options_reach_the_config(tmp_path: Path, synth_stub) -> None:
    from spotformer.cli import main

    argv = ["make-synthetic", "--out", str(tmp_path / "o"), "--subjects", "3"]
    argv += ["--videos-per-subject", "4", "--seconds", "12", "--seed", "9", "--width", "320"]
    argv += ["--height", "240", "--fps", "25", "--macro", "1", "--micro", "2", "--crf", "20"]
    assert main([*argv, "--quiet", "--overwrite"]) == 0
    c = synth_stub["config"]
    assert (c.subjects, c.videos_per_subject, c.seconds, c.seed) == (3, 4, 12.0, 9)
    assert (c.width, c.height, c.fps, c.crf) == (320, 240, 25.0, 20)
    assert (c.macro_per_video, c.micro_per_video) == (1, 2)
    assert synth_stub["overwrite"] and not synth_stub["progress"]
    assert main(argv) == 0
    assert not synth_stub["overwrite"] and synth_stub["progress"]


def test_make_synthetic_defaults_are_the_librarys_default_set(tmp_path: Path, synth_stub) -> None:
    """No options: the default benchmark (docs/synthetic.md; the demo's help: 2 videos
    per subject of 30 s), i.e. SyntheticConfig's defaults."""
    from spotformer.cli import main
    from spotformer.data.synthetic import SyntheticConfig

    assert main(["make-synthetic", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert synth_stub["config"] == SyntheticConfig()


def test_make_synthetic_warns_when_nothing_is_planted(tmp_path: Path, synth_stub, capsys) -> None:
    from spotformer.cli import main

    argv = ["make-synthetic", "--out", str(tmp_path / "o"), "--quiet"]
    synth_stub["videos"] = [{"expressions": []}, {"expressions": []}]
    assert main(argv) == 0
    assert "no expression was planted" in capsys.readouterr().err
    synth_stub["videos"] = [{"expressions": [{}]}, {"expressions": []}]
    assert main(argv) == 0
    assert "no expression was planted" not in capsys.readouterr().err


def test_make_synthetic_names_its_own_options(tmp_path: Path, capsys) -> None:
    from spotformer.cli import main

    for opt in ("--macro", "--micro"):
        assert main(["make-synthetic", "--out", str(tmp_path / "o"), opt, "-1"]) == 2
        err = capsys.readouterr().err
        assert f"error: {opt} -1:" in err and "per_video" not in err, err
        assert not (tmp_path / "o").exists()
