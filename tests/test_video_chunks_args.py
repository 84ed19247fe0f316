"""``chunks(start=, stop=)`` take frame numbers, checked when ``chunks`` is called (a real
bug found by mutation review: 2.0 raised a bare TypeError only at the first ``next()``,
without the file's name, and True was read as frame 1, as ``read`` once did)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sw_mro.io import open_video


@pytest.mark.parametrize(
    "kwargs",
    [{"start": 2.0}, {"stop": 5.5}, {"start": True}, {"stop": np.bool_(True)}, {"start": "1"}],
)
def test_chunks_refuse_start_and_stop_that_are_not_frame_numbers(kwargs: dict) -> None:
    video = open_video(np.zeros((10, 4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match=r"<frames in memory>: (start|stop) .* is not an integer"):
        video.chunks(3, **kwargs)  # at the call, before any next()


def test_chunks_take_numpy_and_torch_integers() -> None:
    frames = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(3, axis=3)
    video = open_video(frames)
    got = [
        (i, x[:, 0, 0, 0].tolist())
        for i, x in video.chunks(3, start=np.int64(2), stop=torch.tensor(7))
    ]
    assert got == [(2, [2, 3, 4]), (5, [5, 6])]
