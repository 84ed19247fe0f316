"""Planning for the synthetic benchmark: the settings, every event and the subjects.

Nothing here writes files or renders frames; :func:`plan` returns the manifest (the
complete description of the data set: seed, settings, subjects with their detected
landmarks, and per video every expression, blink, head move and the per-frame head
pose) plus the subjects' plates for :mod:`spotformer.data.synthetic_render`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from spotformer.data import synthetic_render as R
from spotformer.errors import SpotFormerError

__all__ = [
    "ACTIONS",
    "CASME2_SUBJECT_NUMBERS",
    "CASME2_VIDEO_CODES",
    "SyntheticConfig",
    "SyntheticConfigError",
    "blink_profile",
    "expression_profile",
    "frame_points",
    "plan",
    "sites",
]

# CAS(ME)^2's subject numbers (folders s15 ... s40); more subjects continue from 41.
CASME2_SUBJECT_NUMBERS: tuple[int, ...] = (
    15, 16, 19, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 40,
)  # fmt: skip
# CAS(ME)^2's ``naming rule2`` (SPEC.md section 1); more videos get codes 06xx "videoN".
CASME2_VIDEO_CODES: tuple[tuple[str, str], ...] = (
    ("0101", "disgust1"), ("0102", "disgust2"), ("0401", "anger1"), ("0402", "anger2"),
    ("0502", "happy1"), ("0503", "happy2"), ("0505", "happy3"), ("0507", "happy4"),
    ("0508", "happy5"),
)  # fmt: skip
# (region, action) -> (AUs, emotion, self-report) for the xlsx columns F, G, I.
ACTIONS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("brows", "raise"): ("1+2", "surprise", "surprise"),
    ("brows", "lower"): ("4", "negative", "disgust"),
    ("mouth", "smile"): ("12", "positive", "happy"),
    ("mouth", "depress"): ("15", "negative", "sad"),
}


#: The fewest frames a video may have: SW-MRO's default window (SPEC 2), which refuses
#: shorter videos.
MIN_FRAMES = 17


class SyntheticConfigError(SpotFormerError, ValueError):
    """A synthetic-benchmark setting is invalid or the events cannot be fitted.

    For a setting, ``field`` (a ``SyntheticConfig`` field, or ``"width/height"``),
    ``value`` and ``want`` say which and why, so a command can name its own option.
    """

    def __init__(
        self, message: str, *, field: str | None = None, value: Any = None, want: str = ""
    ) -> None:
        super().__init__(message)
        self.field, self.value, self.want = field, value, want


Range = tuple[float, float]
IntRange = tuple[int, int]


@dataclass(frozen=True)
class SyntheticConfig:
    """Every setting of :func:`make_synthetic` (all recorded in the manifest).

    Sizes and timing: ``subjects``, ``videos_per_subject``, ``seconds``, ``fps``,
    ``width``, ``height``. ``face_size``: side of SW-MRO's landmark crop of the face as
    a fraction of the frame width (0.4: ~256 px at 640 px), jittered per subject by
    ``face_size_jitter``.

    Expressions per video: ``macro_per_video``, ``micro_per_video`` (None: the rates
    ``macro_per_minute``, ``micro_per_minute`` times the duration, rounded; 3 + 3 in
    a 30 s video); lengths ``offset - onset + 1`` drawn from ``macro_frames`` /
    ``micro_frames`` (frames, not seconds: the defaults are 30 fps's, micro at most
    0.5 s as MEGC counts it; scale both with another ``fps``, which does not scale
    them); peak displacements (video px) from ``macro_peak_px`` / ``micro_peak_px``; the apex at a
    fraction ``apex_fraction`` of the way from onset to offset; ``both_sides_prob``
    both sides, else one; ``brow_prob`` brows, else mouth corners. ``min_gap_frames``
    separates expressions from each other, from the video's ends and from head moves.

    Distractors: ``blinks_per_minute`` blinks of ``blink_frames`` frames (kept off the
    expressions unless ``blinks_during_expressions``);
    ``head_moves_per_minute`` sudden moves of ``head_move_frames`` frames,
    ``head_move_px`` px and up to ``head_move_deg`` degrees; drift amplitudes
    ``drift_px``, ``drift_deg``, ``drift_scale`` (relative). ``noise_sigma``: sensor
    noise in grey levels (fresh every frame); ``texture``: static fine skin texture
    added to the upscaled photographs (grey levels std, blurred by ``texture_scale``
    px at 640 px width; 0 turns it off); ``crf``: H.264 quality (14: at 18, x264
    flattens a further ~7 % of the smallest micro motions, at 10 the files are 3x
    larger); ``interpolation``: how frames are resampled from the subject's plate
    (``cubic`` is 2.5x slower; the plates are upscaled photographs, smooth at pixel
    scale). ``seed``: everything random.
    """

    subjects: int = 6
    videos_per_subject: int = 2
    seconds: float = 30.0
    fps: float = 30.0
    width: int = 640
    height: int = 480
    face_size: float = 0.4
    face_size_jitter: float = 0.08
    macro_per_video: int | None = None
    micro_per_video: int | None = None
    macro_per_minute: float = 6.0
    micro_per_minute: float = 6.0
    macro_frames: IntRange = (16, 120)
    micro_frames: IntRange = (5, 15)
    macro_peak_px: Range = (2.0, 6.0)
    micro_peak_px: Range = (0.3, 1.5)
    apex_fraction: Range = (0.3, 0.6)
    both_sides_prob: float = 0.5
    brow_prob: float = 0.5
    min_gap_frames: int = 20
    blinks_per_minute: float = 12.0
    blinks_during_expressions: bool = False
    blink_frames: IntRange = (6, 12)
    head_moves_per_minute: float = 4.0
    head_move_frames: IntRange = (4, 10)
    head_move_px: Range = (4.0, 12.0)
    head_move_deg: float = 2.0
    drift_px: float = 3.0
    drift_deg: float = 0.5
    drift_scale: float = 0.005
    noise_sigma: float = 2.0
    texture: float = 3.0
    texture_scale: float = 1.0
    crf: int = 14
    interpolation: Literal["linear", "cubic"] = "linear"
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(name: str, value: Any, want: str) -> SyntheticConfigError:
            return SyntheticConfigError(
                f"SyntheticConfig.{name}={value!r}: {want}", field=name, value=value, want=want
            )

        for name in ("subjects", "videos_per_subject", "width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise bad(name, v, "must be an int >= 1")
        if self.width < 96 or self.height < 72 or self.width % 2 or self.height % 2:
            raise bad("width/height", (self.width, self.height), "need even sizes >= 96x72")
        for name in ("macro_per_video", "micro_per_video", "min_gap_frames", "crf", "seed"):
            v = getattr(self, name)
            if v is None and name.endswith("_per_video"):
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise bad(name, v, "must be an int >= 0")
        if self.interpolation not in R.INTERPOLATION:
            raise bad("interpolation", self.interpolation, f"use one of {sorted(R.INTERPOLATION)}")
        if self.crf > 51:
            raise bad("crf", self.crf, "x264 accepts 0..51")
        for name in ("seconds", "fps", "face_size"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise bad(name, v, "must be a positive number")
        if self.num_frames < MIN_FRAMES:
            raise bad(
                "seconds", self.seconds,
                f"gives {self.num_frames} frames at {self.fps:g} fps; a video needs at least "
                f"{MIN_FRAMES} (SW-MRO's default window)",
            )  # fmt: skip
        for name in ("macro_frames", "micro_frames", "blink_frames", "head_move_frames"):
            lo, hi = getattr(self, name)
            if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
                raise bad(name, (lo, hi), "need ints 1 <= lo <= hi")
        for name in ("macro_frames", "micro_frames"):
            if getattr(self, name)[0] < 3:
                raise bad(name, getattr(self, name), "need >= 3 frames (onset < apex < offset)")
        for name in ("macro_peak_px", "micro_peak_px", "head_move_px"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise bad(name, (lo, hi), "need 0 <= lo <= hi")
        lo, hi = self.apex_fraction
        if not 0 < lo <= hi < 1:
            raise bad("apex_fraction", (lo, hi), "need 0 < lo <= hi < 1")
        for name in ("both_sides_prob", "brow_prob", "face_size_jitter"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, getattr(self, name), "must be in [0, 1]")
        for name in (
            "macro_per_minute", "micro_per_minute", "blinks_per_minute",
            "head_moves_per_minute", "head_move_deg", "drift_px", "drift_deg", "drift_scale",
            "noise_sigma", "texture", "texture_scale",
        ):  # fmt: skip
            if not getattr(self, name) >= 0:
                raise bad(name, getattr(self, name), "must be >= 0")
        peak = max(self.macro_peak_px[1], self.micro_peak_px[1])
        if peak > 0.05 * self.width:  # the displacement field would fold over itself
            # Named by the width (found in review: named as "--macro-peak-px", which the
            # command does not have, with "fold" unexplained).
            raise bad(
                "width", self.width,
                f"too narrow for expression peaks of {peak:g} px (macro_peak_px / "
                f"micro_peak_px): a peak may move at most 5 % of the width, or the "
                f"expression's displacement folds the face over itself; need a width of "
                f"at least {2 * math.ceil(peak / 0.1)} (even)",
            )  # fmt: skip

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    @property
    def counts(self) -> tuple[int, int]:
        """(macro, micro) expressions per video."""
        minutes = self.seconds / 60.0
        macro = self.macro_per_video
        micro = self.micro_per_video
        return (
            int(round(self.macro_per_minute * minutes)) if macro is None else macro,
            int(round(self.micro_per_minute * minutes)) if micro is None else micro,
        )

    @property
    def num_videos(self) -> int:
        return self.subjects * self.videos_per_subject

    def to_json(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


# --------------------------------------------------------------------------- planning


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def expression_profile(onset: int, apex: int, offset: int, t: np.ndarray) -> np.ndarray:
    """Amplitude in [0, 1] at frames ``t``: raised cosines 0 at onset, 1 at apex, 0 at offset."""
    t = np.asarray(t, np.float64)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((t - onset) / max(apex - onset, 1), 0, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - apex) / max(offset - apex, 1), 0, 1))
    return np.where(t <= apex, rise, fall) * ((t >= onset) & (t <= offset))


def blink_profile(b: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """Fast close to ``closed``, hold to ``reopen``, slower open to ``end``."""
    t = np.asarray(t, np.float64)
    close = _smoothstep((t - b["start"]) / max(b["closed"] - b["start"], 1))
    open_ = 1.0 - _smoothstep((t - b["reopen"]) / max(b["end"] - b["reopen"], 1))
    return b["amount"] * np.minimum(close, open_) * ((t >= b["start"]) & (t <= b["end"]))


def _free_starts(blocked: np.ndarray, length: int, gap: int) -> np.ndarray:
    """Starts s with blocked[s - gap : s + length + gap] all False (inside the video)."""
    n = blocked.shape[0]
    c = np.concatenate([[0], np.cumsum(blocked)])
    s = np.arange(0, n - length + 1)
    lo, hi = np.maximum(s - gap, 0), np.minimum(s + length + gap, n)
    return s[(c[hi] - c[lo]) == 0]


def _plan_expressions(cfg: SyntheticConfig, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Non-overlapping expressions, ``min_gap_frames`` apart and from the video's ends.

    The lengths are drawn first; the free frames are then split at random between the
    gaps, so every draw that fits is placed (uniformly over the splits).
    """
    n, gap = cfg.num_frames, cfg.min_gap_frames
    n_macro, n_micro = cfg.counts
    kinds = ["macro"] * n_macro + ["micro"] * n_micro
    lengths = [
        int(rng.integers(*(cfg.macro_frames if k == "macro" else cfg.micro_frames), endpoint=True))
        for k in kinds
    ]
    slack = n - sum(lengths) - gap * (len(kinds) + 1)
    if slack < 0:
        raise SyntheticConfigError(
            f"{n_macro} macro- and {n_micro} micro-expressions ({sum(lengths)} frames) with "
            f"{gap}-frame gaps do not fit into a {n}-frame video: lower the counts or "
            f"lengths, or raise --seconds"
        )
    cuts = np.sort(rng.integers(0, slack, size=len(kinds), endpoint=True))
    extra = np.diff(np.concatenate([[0], cuts, [slack]]))
    out, pos = [], gap + int(extra[0])
    for i, k in enumerate(rng.permutation(len(kinds))):
        kind, length = kinds[k], lengths[k]
        onset, offset = pos, pos + length - 1
        pos = offset + 1 + gap + int(extra[i + 1])
        frac = rng.uniform(*cfg.apex_fraction)
        apex = onset + min(max(int(round(frac * (length - 1))), 1), length - 2)
        peak = rng.uniform(*(cfg.macro_peak_px if kind == "macro" else cfg.micro_peak_px))
        region = "brows" if rng.random() < cfg.brow_prob else "mouth"
        action = str(rng.choice(["raise", "lower"] if region == "brows" else ["smile", "depress"]))
        sides = (
            ["left", "right"]
            if rng.random() < cfg.both_sides_prob
            else [str(rng.choice(["left", "right"]))]
        )
        out.append(
            {"kind": kind, "onset": onset, "apex": apex, "offset": offset,
             "peak_px": round(float(peak), 4), "region": region, "action": action, "sides": sides}
        )  # fmt: skip
    assert pos - gap <= n, "placement overran the video"
    return out


def _count(per_minute: float, cfg: SyntheticConfig) -> int:
    return int(round(per_minute * cfg.seconds / 60.0))


def _plan_head_moves(
    cfg: SyntheticConfig, rng: np.random.Generator, expressions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    n, gap = cfg.num_frames, cfg.min_gap_frames
    blocked = np.zeros(n, bool)
    for e in expressions:  # a move never lands on an expression (ground truth stays clean)
        blocked[e["onset"] : e["offset"] + 1] = True
    blocked[:2] = True
    count = _count(cfg.head_moves_per_minute, cfg)
    limit = 0.05 * cfg.width  # keep the face well inside the frame
    moves, total, total_deg = [], np.zeros(2), 0.0
    for _ in range(count):
        length = int(rng.integers(*cfg.head_move_frames, endpoint=True))
        starts = _free_starts(blocked, length, gap)
        if starts.size == 0:
            break  # no room left: fewer moves (recorded in the manifest)
        start = int(rng.choice(starts))
        blocked[start : start + length] = True
        mag, ang = rng.uniform(*cfg.head_move_px), rng.uniform(0, 2 * math.pi)
        d = mag * np.array([math.cos(ang), math.sin(ang)])
        if np.linalg.norm(total + d) > limit:
            d = -d
        deg = rng.uniform(-cfg.head_move_deg, cfg.head_move_deg)
        if abs(total_deg + deg) > 2 * cfg.head_move_deg:
            deg = -deg
        total, total_deg = total + d, total_deg + deg
        moves.append(
            {"start": start, "end": start + length - 1, "dx": round(float(d[0]), 4),
             "dy": round(float(d[1]), 4), "dtheta_deg": round(float(deg), 4),
             "magnitude_px": round(float(mag), 4)}
        )  # fmt: skip
    return _within_limits(sorted(moves, key=lambda m: m["start"]), limit, 2 * cfg.head_move_deg)


def _within_limits(
    moves: list[dict[str, Any]], limit: float, max_deg: float
) -> list[dict[str, Any]]:
    """``moves`` (in time order) with the face kept within ``limit`` px and ``max_deg``
    degrees of its rest place as the pose adds them up, in time order (found in review:
    the draw above checks them in the order drawn, so the sorted moves reached 33 px of
    a 32 px limit at 640 px, 54 of 9.6 at 192). A move that would pass the limit goes
    the other way; where that passes it too, it goes the way back towards the rest place
    as far as the limit lets it (``magnitude_px`` says how far). Plans that kept the limits
    are returned as they were: the same seed, the same data set."""
    total, total_deg = np.zeros(2), 0.0
    for m in moves:
        d = np.array([m["dx"], m["dy"]], dtype=float)
        if np.linalg.norm(total + d) > limit + 1e-6:
            mag = float(np.linalg.norm(d))
            u = d / mag if mag > 0 else np.zeros(2)
            if float(total @ u) > 0:  # the way back is the other way
                u = -u
            # the farthest t along u with |total + t u| <= limit (total is within it)
            b = float(total @ u)
            reach = -b + math.sqrt(max(b * b - (float(total @ total) - limit * limit), 0.0))
            d = u * min(mag, reach)
            m.update(dx=round(float(d[0]), 4), dy=round(float(d[1]), 4))
            m.update(magnitude_px=round(float(np.linalg.norm(d)), 4))
            d = np.array([m["dx"], m["dy"]], dtype=float)
        if abs(total_deg + m["dtheta_deg"]) > max_deg:  # |deg| <= max_deg / 2: the other
            m.update(dtheta_deg=-m["dtheta_deg"])  # way keeps within it
        total, total_deg = total + d, total_deg + m["dtheta_deg"]
    return moves


def _plan_blinks(
    cfg: SyntheticConfig, rng: np.random.Generator, expressions: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    n = cfg.num_frames
    blocked = np.zeros(n, bool)
    blocked[:1] = True
    if not cfg.blinks_during_expressions:
        for e in expressions:  # 2 frames of margin: the expression's ends stay clean
            blocked[max(e["onset"] - 2, 0) : e["offset"] + 3] = True
    blocked[max(n - 3, 0) :] = True  # a blink ends before the video does
    out = []
    for _ in range(_count(cfg.blinks_per_minute, cfg)):
        length = int(rng.integers(*cfg.blink_frames, endpoint=True))
        starts = _free_starts(blocked, length, int(0.5 * cfg.fps))  # >= 0.5 s apart
        if starts.size == 0:
            break
        start = int(rng.choice(starts))
        blocked[start : start + length] = True
        end = start + length - 1
        closed = start + max(1, int(round(0.3 * (length - 1))))
        reopen = min(closed + max(0, int(round(0.15 * (length - 1)))), end - 1)
        out.append(
            {"start": start, "closed": closed, "reopen": reopen, "end": end,
             "amount": round(float(rng.uniform(0.7, 1.0)), 4)}
        )  # fmt: skip
    return sorted(out, key=lambda b: b["start"])


def _head_pose(
    cfg: SyntheticConfig, rng: np.random.Generator, moves: list[dict[str, Any]]
) -> np.ndarray:
    """(T, 4) pose per frame: tx, ty (px), theta (deg), scale."""
    t = np.arange(cfg.num_frames) / cfg.fps
    pose = np.zeros((cfg.num_frames, 4))
    for k, amp in enumerate((cfg.drift_px, cfg.drift_px, cfg.drift_deg, cfg.drift_scale)):
        w = rng.dirichlet(np.ones(3)) * amp
        f = rng.uniform(0.03, 0.25, size=3)  # Hz: periods of 4-33 s
        ph = rng.uniform(0, 2 * np.pi, size=3)
        pose[:, k] = (w[:, None] * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])).sum(0)
    frames = np.arange(cfg.num_frames)
    for m in moves:
        step = _smoothstep((frames - m["start"] + 1) / (m["end"] - m["start"] + 1))
        pose[:, 0] += m["dx"] * step
        pose[:, 1] += m["dy"] * step
        pose[:, 2] += m["dtheta_deg"] * step
    pose[:, 3] += 1.0
    return np.round(pose, 5)


# --------------------------------------------------------------------------- subjects


def _subject_entry(
    cfg: SyntheticConfig, index: int, rng: np.random.Generator
) -> tuple[dict, np.ndarray]:
    """A subject's identity, its rest plate and its detected landmarks."""
    w, h = cfg.width, cfg.height
    margin = int(math.ceil(0.12 * max(w, h)))
    source = R.SOURCES[index % len(R.SOURCES)]
    flip = (index // len(R.SOURCES)) % 2 == 1
    for attempt in range(8):
        frame = int(rng.choice(R.CARPHONE_FRAMES)) if source == "carphone" else 0
        rgb, src_pts = R.source_image(source, frame)
        src_centre = (src_pts.min(0) + src_pts.max(0)) / 2
        src_crop = _crop_scale() * float((src_pts.max(0) - src_pts.min(0)).max())
        jitter = rng.uniform(1 - cfg.face_size_jitter, 1 + cfg.face_size_jitter)
        centre = (w * rng.uniform(0.44, 0.56), h * rng.uniform(0.45, 0.55))
        params = {
            "source": source,
            "source_frame": frame,
            "flip": flip,
            "rotation_deg": round(float(rng.uniform(-4, 4)), 3),
            "face_size_px": round(float(cfg.face_size * w * jitter), 3),
            "centre": [round(float(c), 3) for c in centre],
            "gains": [round(float(g), 4) for g in rng.uniform(0.85, 1.15, size=3)],
            "gamma": round(float(rng.uniform(0.8, 1.25)), 4),
            "saturation": round(float(rng.uniform(0.7, 1.3)), 4),
        }
        img = R.colour_transform(rgb, tuple(params["gains"]), params["gamma"], params["saturation"])
        # Scale so that SW-MRO's landmark crop of the face is face_size_px wide.
        plate = R.build_plate(
            img,
            tuple(src_centre),
            params["face_size_px"] / src_crop,
            size=(w, h),
            margin=margin,
            centre=tuple(params["centre"]),
            rotation_deg=params["rotation_deg"],
            flip=flip,
        )
        R.add_texture(plate, rng, cfg.texture, cfg.texture_scale * cfg.width / 640)
        rest = np.clip(plate[margin : margin + h, margin : margin + w] + 0.5, 0, 255).astype(
            np.uint8
        )
        found = R.detect_landmarks(rest)
        if found is not None:
            fbox, pts = found
            ext = pts.max(0) - pts.min(0)
            crop = _crop_scale() * float(ext.max())
            params.update(
                attempts=attempt + 1,
                margin=margin,
                face_box=[round(float(v), 3) for v in fbox],
                landmarks=np.round(pts, 3).tolist(),
                face_centre=[round(float(v), 3) for v in (pts.min(0) + pts.max(0)) / 2],
                crop_side_px=round(crop, 3),
                scale_to_face256=round(256.0 / crop, 5),
            )
            return params, plate
    raise RuntimeError(f"subject {index}: no face found on the rendered {source} plate in 8 tries")


def _crop_scale() -> float:
    """SW-MRO's default landmark crop: ``box_scale`` x the landmarks' larger extent."""
    from sw_mro.config import SWMROConfig

    return float(SWMROConfig().box_scale)


def sites(points: np.ndarray, e: dict[str, Any]) -> list[R.Site]:
    """The displacement fields of expression ``e`` (a manifest entry) on ``points``."""
    make = R.brow_site if e["region"] == "brows" else R.mouth_site
    return [make(points, side, e["action"], e["peak_px"]) for side in e["sides"]]


def _annotate_sites(
    e: dict[str, Any], sites: list[R.Site], points: np.ndarray, scale: float
) -> None:
    gains = np.array([[s.gain_at(points[k]) for k in R.ROI_LANDMARKS] for s in sites]).max(0)
    e["peak_px_face256"] = round(e["peak_px"] * scale, 4)
    e["sites"] = [
        dict(s.to_json(), landmark=int(k)) for s, k in zip(sites, _site_landmarks(e), strict=True)
    ]
    e["roi_gain"] = [round(float(g), 4) for g in gains]
    e["roi_peak_px"] = [round(float(g * e["peak_px"]), 4) for g in gains]
    e["rois"] = [i for i, g in enumerate(gains) if g >= 0.5]


def _site_landmarks(e: dict[str, Any]) -> list[int]:
    table = {
        ("brows", "left"): 19,
        ("brows", "right"): 24,
        ("mouth", "left"): 48,
        ("mouth", "right"): 54,
    }
    return [table[(e["region"], s)] for s in e["sides"]]


def frame_points(
    video: dict[str, Any], subject: dict[str, Any], t: int, points: Any = None
) -> np.ndarray:
    """Rest-coordinate ``points`` (default: the subject's 68 landmarks) moved to frame ``t``.

    ``video`` and ``subject`` are entries of the manifest's ``videos`` and ``subjects``.
    Local fields (expressions, blinks) are not applied; this is the rigid head pose only.
    """
    pts = np.asarray(subject["landmarks"] if points is None else points, np.float64)
    mat = R.pose_matrix(np.asarray(video["pose"]["values"][t]), tuple(video["pose"]["centre"]))
    return pts @ mat[:, :2].T + mat[:, 2]


def _video_code(j: int) -> tuple[str, str]:
    if j < len(CASME2_VIDEO_CODES):
        return CASME2_VIDEO_CODES[j]
    k = j - len(CASME2_VIDEO_CODES) + 1
    return f"{600 + k:04d}", f"video{k}"


def _subject_number(i: int) -> int:
    n = CASME2_SUBJECT_NUMBERS
    return n[i] if i < len(n) else n[-1] + 1 + i - len(n)


def plan(config: SyntheticConfig) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The manifest (without file hashes) and the subjects' plates; no files written."""
    cfg = config
    root = np.random.SeedSequence(cfg.seed)
    subj_seqs = root.spawn(cfg.subjects)
    subjects, plates, videos = [], [], []
    for i in range(cfg.subjects):
        s_seq, *v_seqs = subj_seqs[i].spawn(1 + cfg.videos_per_subject)
        number = _subject_number(i)
        entry, plate = _subject_entry(cfg, i, np.random.default_rng(s_seq))
        subjects.append({"subject": f"s{number}", "number": number, **entry})
        plates.append(plate)
        pts = np.asarray(entry["landmarks"])
        for j in range(cfg.videos_per_subject):
            rng = np.random.default_rng(v_seqs[j].spawn(1)[0])
            code, name = _video_code(j)
            exprs = _plan_expressions(cfg, rng)
            for e in exprs:
                _annotate_sites(e, sites(pts, e), pts, entry["scale_to_face256"])
                au, emotion, _ = ACTIONS[(e["region"], e["action"])]
                e["au"], e["emotion"] = au, emotion
            moves = _plan_head_moves(cfg, rng, exprs)
            blinks = _plan_blinks(cfg, rng, exprs)
            pose = _head_pose(cfg, rng, moves)
            file = f"{number}_{code}{name}.mp4"
            videos.append({
                "video": f"s{number}/{number}_{code}", "subject": f"s{number}", "code": code,
                "name": name, "path": f"rawvideo/s{number}/{file}", "frames": cfg.num_frames,
                "fps": cfg.fps, "width": cfg.width, "height": cfg.height,
                "expressions": exprs, "blinks": blinks, "head_moves": moves,
                "requested": {"blinks": _count(cfg.blinks_per_minute, cfg),
                              "head_moves": _count(cfg.head_moves_per_minute, cfg)},
                "blink_landmarks": list(range(36, 48)),
                "pose": {"columns": ["tx", "ty", "theta_deg", "scale"],
                         "centre": entry["face_centre"], "values": pose.tolist()},
            })  # fmt: skip
    manifest = {
        "format": "spotformer-synthetic",
        "version": 1,
        "seed": cfg.seed,
        "config": cfg.to_json(),
        "frame_convention": "0-based indices into the decoded frames; the xlsx is 1-based",
        "roi_landmarks": list(R.ROI_LANDMARKS),
        "subjects": subjects,
        "videos": videos,
    }
    return manifest, plates
