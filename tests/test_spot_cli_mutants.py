"""`spotformer spot` and `spotformer evaluate` behaviours found untested by mutation
testing: options that must take effect, validations, ids, strides and ground truth.

Spot runs on a tiny untrained model file; the extraction and the model's logits are
replaced by ones built here, so every run takes well under a second."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from spotformer.cli import main
from spotformer.metrics import Interval, evaluate, read_intervals, write_intervals

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 160  # frames of the fake features


def _video(path: Path, fps: float = 30.0, n: int = 20) -> Path:
    from sw_mro.io.writer import write_video

    frames = np.random.default_rng(0).integers(0, 255, (n, 48, 64, 3), dtype=np.uint8)
    return write_video(path, frames, fps=fps)


def _model(path: Path, info: dict | None = None) -> Path:
    from spotformer.models import SpotFormer, SpotFormerConfig
    from spotformer.train import TrainConfig, save_model

    cfg = TrainConfig(model=SpotFormerConfig(dim=16, heads=2, head_dim=8, mlp_dim=16), epochs=1)
    extra = {"subject": "s0", "epoch": 1, "info": info or {"fps": 30.0, "stride": 1}}
    save_model(path, SpotFormer(cfg.model), cfg, extra)
    return path


def _me_logits(apex_logits: list[float], reach: int = 4) -> torch.Tensor:
    """ME apex peaks 20 frames apart (P_apex = sigmoid of the given logits), each with
    its onset ``reach`` frames before and its offset ``reach`` frames after; no MaE."""
    logits = torch.zeros(N, 10)
    logits[:, 6:8] = -10.0
    peaks = [10 + 20 * i for i in range(len(apex_logits))]
    logits[peaks, 6] = torch.tensor(apex_logits)
    logits[[p - reach for p in peaks], 0] = 2.0
    logits[[p + reach for p in peaks], 1] = 2.0
    return logits


@pytest.fixture()
def fake(monkeypatch):
    """Fake extraction (``N`` frames at ``fake.fps``) and logits (``fake.logits``);
    ``fake.seen`` records what the extraction was asked for."""
    import spotformer.features as F
    import spotformer.train as T

    state = type("Fake", (), {})()
    state.fps, state.logits, state.seen, state.missing = 30.0, _me_logits([3.0]), {}, []

    def video_features(path, config=None, *, stride=1, fps=None, bar=None, fallback=None, **_):
        state.seen.update(path=Path(path), stride=stride, fps=fps, total=bar.total)
        bar.update(bar.total)
        if fallback is not None:
            fallback.extend(state.missing)
        return torch.zeros(N, 17, 10, 2), state.fps

    monkeypatch.setattr(F, "video_features", video_features)
    monkeypatch.setattr(T, "predict_logits", lambda *a, **k: state.logits)
    return state


def _rows(table: str) -> dict[str, list[float]]:
    """The TP/FP/FN/... rows of a printed table, by their first word."""
    out = {}
    for line in table.splitlines():
        words = line.split()
        if words and words[0] in ("MaE", "ME", "Overall"):
            out[words[0]] = [float(w) for w in words[1:]]
    return out


# -- spot: options that must take effect -----------------------------------------------------


def test_apex_threshold_option_changes_the_intervals(tmp_path: Path, fake, capsys) -> None:
    """Mutant: --apex-threshold was validated but its value not used."""
    from spotformer.postprocess import SpotParams, spot_video

    fake.logits = _me_logits([0.5, 2.0])  # P_apex 0.62 and 0.88
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    for extra, threshold in (([], 0.5), (["--apex-threshold", "0.7"], 0.7)):
        assert main([*argv, *extra]) == 0
        want = spot_video(fake.logits, "clip", 30.0, SpotParams(apex_threshold=threshold))
        got = read_intervals(out)
        assert [(i.onset, i.offset) for i in got] == [(i.onset, i.offset) for i in want]
    # the two thresholds must give different results for this test to mean anything
    low = spot_video(fake.logits, "clip", 30.0, SpotParams(apex_threshold=0.5))
    assert len(low) == 2 and len(got) == 1


def test_post_processing_uses_the_videos_frame_rate(tmp_path: Path, fake) -> None:
    """Mutant: the post-processing windows were always those of 30 fps. At 60 fps the
    ME onset search reaches 16 frames before the apex (8 at 30 fps): onsets 12 frames
    away are found only at the video's real rate."""
    from spotformer.postprocess import SpotParams, spot_video

    fake.fps, fake.logits = 60.0, _me_logits([3.0, 3.0], reach=12)
    video = _video(tmp_path / "clip.mp4", fps=60.0)
    model, out = _model(tmp_path / "m.pt", {"fps": 60.0}), tmp_path / "o.csv"
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    want = spot_video(fake.logits, "clip", 60.0, SpotParams())
    assert want, "nothing spotted at 60 fps: nothing to compare"
    assert spot_video(fake.logits, "clip", 30.0, SpotParams()) != want
    assert [(i.onset, i.offset, i.kind) for i in read_intervals(out)] == [
        (i.onset, i.offset, i.kind) for i in want
    ]


def test_a_samm_model_reads_a_frame_folder_at_200_fps_and_stride_7(
    tmp_path: Path, fake, capsys
) -> None:
    """A SAMM-LV model (200 fps folders at stride 7): the folder is probed and extracted
    at the model's data's rate and stride (mutants: probed or extracted at the default
    rate; progress counted in source frames; faceless frames without their stride)."""
    import cv2

    folder = tmp_path / "006_1"
    folder.mkdir()
    n = 7 * 17 + 3  # 18 frames at stride 7
    for i in range(n):
        cv2.imwrite(str(folder / f"006_1_{i + 1:04d}.png"), np.zeros((24, 32, 3), np.uint8))
    info = {"fps": 200.0 / 7, "source_fps": 200.0, "stride": 7, "dataset": "samm"}
    model, out = _model(tmp_path / "m.pt", info), tmp_path / "o.csv"
    fake.fps, fake.missing = 200.0 / 7, list(range(40, 60))  # 20 of 160: warned
    assert main(["spot", str(folder), "--checkpoint", str(model), "--out", str(out)]) == 0
    assert (fake.seen["stride"], fake.seen["fps"]) == (7, info["source_fps"])
    assert fake.seen["total"] == math.ceil(n / 7)  # the progress counts the frames kept
    err = capsys.readouterr().err
    assert "no face in 20 of its 160 frames (frames 40-59 at stride 7)" in err, err


def test_older_model_takes_the_given_stride(tmp_path: Path) -> None:
    """Mutant: a model without a rate or stride record took every frame even with
    --stride."""
    from spotformer.commands.spot import open_like_training

    v60 = _video(tmp_path / "b.mp4", fps=60.0)
    assert open_like_training(v60, {}, 3, None)[0] == 3
    assert open_like_training(v60, {"stride": None}, 2, None)[0] == 2


def test_spot_accepts_a_video_exactly_one_window_long(tmp_path: Path, fake) -> None:
    """17 frames, or 33 at stride 2 (17 kept), fill the model's window of 17 (mutants:
    `<=` for `<`, and the frames kept counted down instead of up)."""
    model = _model(tmp_path / "m.pt")
    for n, stride in ((17, 1), (33, 2)):
        video = _video(tmp_path / f"v{n}.mp4", n=n)
        argv = ["spot", str(video), "--checkpoint", str(model), "--no-progress"]
        argv += ["--out", str(tmp_path / "o.csv"), "--stride", str(stride)]
        assert main(argv) == 0, (n, stride)
        assert fake.seen["stride"] == stride


def test_gpu_is_refused_without_cuda_and_used_with_it(tmp_path: Path, monkeypatch, capsys) -> None:
    """Mutants: --gpu without CUDA not refused; --gpu ignored (the model loaded on CPU)."""
    import spotformer.train as T
    from spotformer.train import TrainError

    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--gpu"]
    devices: list[str] = []

    def load(path, device="cpu"):  # noqa: ANN001, ANN202
        devices.append(str(device))
        raise TrainError("stop here")

    monkeypatch.setattr(T, "load_model", load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(argv) == 2
    assert "--gpu given but no CUDA device is available" in capsys.readouterr().err
    assert devices == [] and not out.exists()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert main(argv) == 2
    assert devices == ["cuda"]


def test_an_infinite_fps_is_refused_as_the_option(tmp_path: Path, fake, capsys) -> None:
    """Mutant: --fps inf passed the check (a later error did not name the option)."""
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out)]
    assert main([*argv, "--fps", "inf"]) == 2
    assert (
        "spotformer spot: --fps must be a positive frame rate, got inf" in capsys.readouterr().err
    )
    assert fake.seen == {} and not out.exists()


def test_intervals_near_faceless_frames_reach_half_a_window(tmp_path: Path, fake, capsys) -> None:
    """An interval's features span half the model's window (8 frames) either side of
    it; mutant: a whole window. One ME interval; a faceless frame 8 frames past it is
    named, one 16 past it is not."""
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    (iv,) = read_intervals(out)
    for frame, named in ((iv.offset + 8, True), (iv.offset + 16, False)):
        fake.missing = [frame]
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert ("reaches frames without a face" in err) == named, (frame, err)


# -- spot: output checks ---------------------------------------------------------------------


def test_out_naming_the_ground_truth_is_refused(tmp_path: Path, fake, capsys) -> None:
    """Mutant: --out could replace the --gt file with the intervals."""
    video, model = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt")
    gt = tmp_path / "gt.csv"
    write_intervals([Interval("clip", 5, 20, "macro")], gt)
    before = gt.read_bytes()
    argv = ["spot", str(video), "--checkpoint", str(model), "--gt", str(gt), "--out", str(gt)]
    assert main(argv) == 2
    assert f"--out {gt} is --gt, which it would replace" in capsys.readouterr().err
    assert gt.read_bytes() == before and fake.seen == {}


def test_out_naming_a_folder_is_refused_before_extraction(tmp_path: Path, fake, capsys) -> None:
    """Mutant: the folder check dropped (the write then failed after the extraction)."""
    video, model = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt")
    (tmp_path / "adir").mkdir()
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(tmp_path / "adir")]
    assert main(argv) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert fake.seen == {}


def test_out_is_replaced_whole_not_rewritten_in_place(tmp_path: Path, fake) -> None:
    """The CSV is written to a new file and renamed over the old one (mutant: written in
    place): a reader that has the old file open keeps reading it whole."""
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    old = "video,onset,offset,type,score,apex\nold,1,2,micro,0.5,1\n"
    out.write_text(old)
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    with open(out) as reader:
        assert main(argv) == 0
        assert reader.read() == old
    assert read_intervals(out) and out.read_text() != old


def test_plot_names_no_ground_truth_without_gt(tmp_path: Path, fake, monkeypatch) -> None:
    """Mutant: the plot's title named a ground truth when no --gt was given."""
    import matplotlib.axes

    titles: list[str] = []
    real = matplotlib.axes.Axes.set_title
    monkeypatch.setattr(
        matplotlib.axes.Axes, "set_title", lambda ax, t, *a, **k: titles.append(t) or real(ax, t)
    )
    video, model = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt")
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(tmp_path / "o.csv")]
    assert main([*argv, "--plot", str(tmp_path / "p.png"), "--no-progress"]) == 0
    assert titles == ["clip: predicted (green)"]
    gt = tmp_path / "gt.csv"
    write_intervals([Interval("clip", 5, 20, "macro")], gt)
    assert main([*argv, "--plot", str(tmp_path / "p.png"), "--no-progress", "--gt", str(gt)]) == 0
    assert titles[-1] == "clip: predicted (green), ground truth (red bars)"


# -- spot: video ids and ground truth ------------------------------------------------------


def test_video_id_option_wins_over_the_ground_truths_ids(tmp_path: Path, fake, capsys) -> None:
    """Mutant: an id of --gt matching the file name replaced the given --video-id."""
    video, model, out = _video(tmp_path / "a.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    gt = tmp_path / "gt.csv"
    write_intervals([Interval("a", 5, 20, "macro"), Interval("b", 30, 60, "macro")], gt)
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    assert main([*argv, "--gt", str(gt), "--video-id", "b"]) == 0
    io = capsys.readouterr()
    assert io.out.startswith("b: ") and "from --gt" not in io.err
    got = read_intervals(out)
    assert got and {i.video for i in got} == {"b"}


def test_the_ground_truths_id_names_the_intervals(tmp_path: Path, fake, capsys) -> None:
    """Mutant: the id found in --gt (s1/clip for clip.mp4) was said but not used."""
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    gt = tmp_path / "gt.csv"
    write_intervals([Interval("s1/clip", 5, 20, "macro"), Interval("s2/other", 5, 9, "micro")], gt)
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    assert main([*argv, "--gt", str(gt)]) == 0
    io = capsys.readouterr()
    assert "video id 's1/clip', from --gt" in io.err
    assert io.out.startswith("s1/clip: ")
    got = read_intervals(out)
    assert got and {i.video for i in got} == {"s1/clip"}


def test_spot_scores_against_its_own_videos_ground_truth_only(tmp_path: Path, fake, capsys) -> None:
    """Mutant: the printed table counted every video's expressions of --gt as misses."""
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    gt = tmp_path / "gt.csv"
    own = [Interval("clip", 6, 14, "micro"), Interval("clip", 40, 80, "macro")]
    others = [Interval("other", 5, 20, "macro"), Interval("other", 50, 60, "micro")]
    write_intervals(own + others, gt)
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    assert main([*argv, "--gt", str(gt)]) == 0
    rows = _rows(capsys.readouterr().out)
    want = evaluate(read_intervals(out), own)
    assert rows["Overall"][:3] == [want.overall.tp, want.overall.fp, want.overall.fn]
    assert rows["Overall"][2] < len(own + others) - want.overall.tp  # others not counted


def test_ground_truth_is_cut_at_the_last_extracted_frame(tmp_path: Path, fake, capsys) -> None:
    """The video's last frame is the last one extracted (mutant: one past it), and an
    expression that starts on that frame is kept, cut to it (mutants: dropped)."""
    from spotformer.commands.spot import _within_the_video

    last = N - 1
    one = Interval("v", last, last + 6, "micro", apex=last + 2)
    assert _within_the_video([one], last, "v", 1) == [Interval("v", last, last, "micro", apex=last)]
    capsys.readouterr()
    video, model, out = _video(tmp_path / "clip.mp4"), _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    fake.logits = _me_logits([-5.0])  # nothing spotted: every expression scored is an FN
    gt = tmp_path / "gt.csv"
    write_intervals(
        [Interval("clip", N - 30, N + 10, "macro"), dataclasses.replace(one, video="clip")], gt
    )
    argv = ["spot", str(video), "--checkpoint", str(model), "--out", str(out), "--no-progress"]
    assert main([*argv, "--gt", str(gt)]) == 0
    io = capsys.readouterr()
    assert f"2 run past the video's last frame ({last}, at stride 1) and are cut there" in io.err
    rows = _rows(io.out)
    assert (rows["MaE"][2], rows["ME"][2]) == (1, 1)  # both scored, as FNs


@pytest.mark.usefixtures("fake")
def test_spot_dot_names_the_video_by_its_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "take1"
    folder.mkdir()
    for i in range(20):
        cv2.imwrite(str(folder / f"img{i + 1:03d}.png"), np.zeros((24, 32, 3), np.uint8))
    model, out = _model(tmp_path / "m.pt"), tmp_path / "o.csv"
    monkeypatch.chdir(folder)
    assert main(["spot", ".", "--checkpoint", str(model), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("take1: ")
    got = read_intervals(out)
    assert got and {i.video for i in got} == {"take1"}


def test_a_folder_is_matched_to_ground_truth_by_its_whole_name(tmp_path: Path) -> None:
    """Mutant: a frame folder ``take.v2`` was matched as ``take``."""
    from spotformer.commands.spot import ground_truth_id

    folder = tmp_path / "take.v2"
    folder.mkdir()
    assert ground_truth_id(folder, {"take", "take.v2"}) == "take.v2"


def test_the_longest_matching_ground_truth_id_wins(tmp_path: Path) -> None:
    """Mutant: the shortest id whose name starts the video's was taken (SAMM-LV
    ``006_1-take2``: subject ``006``'s id, not video ``006_1``'s)."""
    from spotformer.commands.spot import ground_truth_id

    folder = tmp_path / "006_1-take2"
    folder.mkdir()
    assert ground_truth_id(folder, {"006", "006_1"}) == "006_1"
    assert ground_truth_id(folder, {"x/006", "y/006_1"}) == "y/006_1"


# -- shared post-processing options ---------------------------------------------------------


def test_zero_valued_spotting_options_are_taken() -> None:
    """Mutant: options given as 0 were taken for not given (falsy)."""
    import argparse

    from spotformer.commands._spot_args import add_spotting_arguments, spot_params_from
    from spotformer.postprocess import SpotParams

    parser = argparse.ArgumentParser()
    add_spotting_arguments(parser, override=True)
    base = SpotParams(expr_gap=12.0, expr_extend=3.0)
    got = spot_params_from(parser.parse_args(["--expr-gap", "0", "--expr-extend", "0"]), base)
    assert (got.expr_gap, got.expr_extend) == (0.0, 0.0)


def test_option_words_leaves_other_messages_alone() -> None:
    """Mutant: a message starting with a field no option sets was a KeyError."""
    from spotformer.commands._spot_args import SPOT_OPTIONS, option_words

    msg = "nms_iou must be in (0, 1]; got 2"
    assert option_words(msg, SPOT_OPTIONS) == msg
    assert option_words("top_k must be an int >= 1; got 0", SPOT_OPTIONS).startswith("--top-k ")


# -- evaluate ---------------------------------------------------------------------------------


def _files(tmp_path: Path, gt: str, pred: str) -> tuple[Path, Path]:
    g, p = tmp_path / "gt.csv", tmp_path / "pred.csv"
    g.write_text("video,onset,offset,type\n" + gt)
    p.write_text("video,onset,offset,type\n" + pred)
    return p, g


def test_evaluate_iou_of_one_counts_only_exact_matches(tmp_path: Path, capsys) -> None:
    """Mutant: --iou 1 (inside SPEC's (0, 1]) was refused; the header names the IoU."""
    pred, gt = _files(tmp_path, "v,10,19,micro\nv,40,49,micro\n", "v,10,19,micro\nv,41,49,micro\n")
    argv = ["evaluate", "--pred", str(pred), "--gt", str(gt), "--iou", "1"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["micro"]["tp"], out["micro"]["fp"], out["micro"]["fn"], out["iou"]) == (1, 1, 1, 1)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "IoU >= 1" in out and "authors" not in out
    assert main([*argv, "--protocol", "authors"]) == 0
    assert "the authors' protocol" in capsys.readouterr().out


def test_evaluate_refuses_stride_zero(tmp_path: Path, capsys) -> None:
    """Mutant: --stride 0 was taken (and a workbook then converted at its data set's
    stride, as if none was given)."""
    pred, gt = _files(tmp_path, "v,10,19,micro\n", "v,10,19,micro\n")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--stride", "0"]) == 2
    assert "--stride must be >= 1, got 0" in capsys.readouterr().err


def test_evaluate_empty_predictions_and_ground_truth_say_no_fn_note(tmp_path: Path, capsys) -> None:
    """Mutant: "every expression of the ground truth (0) counts as an FN" for an empty
    ground truth."""
    pred, gt = _files(tmp_path, "", "")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    io = capsys.readouterr()
    assert json.loads(io.out)["ground_truths"] == 0
    assert "counts as an FN" not in io.err


def test_evaluate_refuses_an_empty_prediction_file(tmp_path: Path, capsys) -> None:
    """A 0-byte predictions file (a failed run's) is an error naming it, not an empty
    prediction set (mutant: read as no predictions)."""
    _, gt = _files(tmp_path, "v,10,19,micro\n", "")
    empty = tmp_path / "zero.csv"
    empty.write_bytes(b"")
    assert main(["evaluate", "--pred", str(empty), "--gt", str(gt)]) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "empty" in err
