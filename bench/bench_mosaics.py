"""Measure issue 15: is every kind of real mosaic restored edge to edge, better than smoothing, and nothing else?

    python bench/bench_mosaics.py ../shared/data/clips.csv -o OUTDIR [--clips 4] [--max-frames 24]
        [--kinds blocks16 blocks8 size10 opencv12 deface20 centre16] [--sizes native small closeup]
        [--sample-evidence both|on|off] [--logo] [--only CLIP ...] [--no-identity]

Run from the repository root with depix importable (`PYTHONPATH=.`). Over the first `--clips` val clips of
clips.csv (split == val), first `--max-frames` frames, each mosaic kind is made without depix's help
for `depix run` to find:

- `blocks16`, `blocks8`: block means, N x N over the YuNet face box x 1.3 (`depix pixelate --blocks N`);
- `size10`: block means of a 10 px grid fixed to the image (`--block-size 10`);
- `opencv12`: cv2 INTER_AREA down to 12 x 12 and INTER_NEAREST back up over the face box x 1.3;
- `deface20`: deface's `--replacewith mosaic --mosaicsize 20`: CenterFace box grown 0.3 of its size on
  every side, every 20 px block set to its top-left pixel, the grid on the (per-frame, jittery) box corner;
- `centre16`: 16 x 16 centre samples (`--value center`).

Each at the clip's native size and (`small`) scaled so that faces are about SMALL_FACE px wide (clips whose
faces are already narrower than SMALL_FACE x 1.15 are skipped there), and (`closeup`) a CLOSEUP px square around
the face (CLOSEUP_FACES face widths): the 512 px close-up of issue 15. `--logo` adds, on the first clip,
`blocks16` with a white logo drawn LOGO_GAP px right of the mosaic on every frame.

The pixelated video (H.264 crf 18) goes through `run.run_video` with nothing given; its output is written
at crf 0 so that "pixels changed outside" counts the paste, not the codec. Per frame with a mosaic, inside
the true mosaic rect: PSNR (luma) of the output, of a Gaussian smoothing of the mosaic (sigma 0.5 block,
`audit.attack_smooth`) and of bicubic interpolation of its block values on the true grid
(`restore.evidence.interpolate_values`) against the clean frame; the leftover-block ratio (energy of the
luma gradient profile at the grid's own period, output / clean: 1 = no more block structure than the truth);
and the share of pixels outside the rect grown by `restore.blend.MAX_FEATHER` + 1 px whose luma changed by
more than OUTSIDE_LEVELS; the flicker of the output and of the per-frame bicubic interpolation (`flicker`: the
change from the previous frame that the clean frames do not have, luma grey levels). Prints a table per kind and
size, writes `OUTDIR/mosaics.json` and PNG strips `OUTDIR/<clip>__<kind>__<size>.png` (clean | pixelated |
smoothing | output, around the mosaic).
SFace cosine (depixcli.faces.identity, aligned on the clean head crop) of the output and of the smoothing to
the clean frame, and dlib's (the independent judge of `depix eval`, when dlib is installed), unless --no-identity.

Last run (the code of the commit that wrote this table, the session-5 weights/depix-default.safetensors, CPU at nice
10, two calls side by side; 4 val clips x 8 frames, 1 for the logo; PSNR columns in dB over smoothing and bicubic;
out: share of pixels changed outside; SFace and dlib cosines of the output and of the smoothing; flicker of the
output and of bicubic interpolation, grey levels; the share of pixels changed inside the rect, 0.912 to 0.977, is in
the printed table):

    PYTHONPATH=. nice -n 10 python bench/bench_mosaics.py ../shared/data/clips.csv -o OUTDIR --max-frames 8 \
        --only lipnet__bbaf2n.mpg lipnet__lrwp9a.mpg pcavs__00015.mp4 HelloMeme__jgz__3b15ab87.mp4 \
        --kinds centre16 size10 deface20 (| blocks16 blocks8 opencv12 --logo: a second call)

| kind | size | PSNR | -smooth | -bicubic | leftover | out | SFace | smooth | dlib | smooth | flicker | bicubic |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| blocks16 | closeup | 24.58 | +3.81 | +1.40 | 0.60 | 0.0000 | 0.613 | 0.395 | 0.940 | 0.917 | 3.69 | 3.64 |
| blocks16 | native | 24.46 | +3.82 | +1.46 | 0.56 | 0.0000 | 0.581 | 0.371 | 0.935 | 0.915 | 3.82 | 3.72 |
| blocks16 | small | 25.00 | +4.25 | +1.82 | 0.76 | 0.0000 | 0.582 | 0.397 | 0.930 | 0.918 | 3.66 | 3.52 |
| blocks16+logo | native | 26.09 | +3.88 | +1.10 | 0.85 | 0.0000 | 0.571 | 0.325 | 0.929 | 0.911 | 1.50 | 1.29 |
| blocks8 | closeup | 20.85 | +3.44 | +1.63 | 0.39 | 0.0000 | 0.323 | 0.135 | 0.904 | 0.858 | 4.55 | 3.86 |
| blocks8 | native | 20.88 | +3.61 | +1.82 | 0.50 | 0.0000 | 0.250 | 0.110 | 0.889 | 0.858 | 5.04 | 3.92 |
| blocks8 | small | 20.80 | +3.51 | +1.98 | 0.43 | 0.0000 | 0.266 | 0.129 | 0.889 | 0.856 | 4.38 | 3.70 |
| centre16 | closeup | 22.69 | +1.81 | +0.94 | 0.75 | 0.0000 | 0.525 | 0.416 | 0.918 | 0.914 | 5.40 | 5.36 |
| centre16 | native | 22.25 | +1.53 | +0.69 | 1.04 | 0.0000 | 0.452 | 0.395 | 0.904 | 0.912 | 5.58 | 5.52 |
| centre16 | small | 22.94 | +1.93 | +0.93 | 0.80 | 0.0000 | 0.489 | 0.417 | 0.927 | 0.915 | 5.20 | 4.84 |
| deface20 | closeup | 22.88 | +4.00 | +0.72 | 1.00 | 0.0000 | 0.563 | 0.455 | 0.932 | 0.912 | 6.15 | 7.96 |
| deface20 | native | 19.55 | +2.80 | +0.44 | 0.65 | 0.0000 | 0.296 | 0.187 | 0.901 | 0.887 | 6.77 | 8.27 |
| deface20 | small | 17.21 | +1.75 | +0.36 | 0.47 | 0.0000 | 0.198 | 0.085 | 0.877 | 0.864 | 6.48 | 5.94 |
| opencv12 | closeup | 23.19 | +3.82 | +1.74 | 0.58 | 0.0000 | 0.498 | 0.233 | 0.918 | 0.899 | 3.93 | 3.77 |
| opencv12 | native | 23.13 | +3.89 | +1.83 | 0.41 | 0.0000 | 0.462 | 0.195 | 0.925 | 0.906 | 4.00 | 3.90 |
| opencv12 | small | 23.34 | +4.12 | +2.23 | 0.57 | 0.0000 | 0.438 | 0.215 | 0.917 | 0.903 | 4.12 | 3.73 |
| size10 | closeup | 27.50 | +1.88 | -0.46 | 0.76 | 0.0000 | 0.854 | 0.808 | 0.979 | 0.972 | 2.83 | 2.61 |
| size10 | native | 25.05 | +2.83 | +1.02 | 0.41 | 0.0000 | 0.652 | 0.559 | 0.943 | 0.933 | 3.43 | 3.13 |
| size10 | small | 23.47 | +3.53 | +1.91 | 0.44 | 0.0000 | 0.474 | 0.309 | 0.920 | 0.907 | 3.25 | 3.14 |

What restored the 12 tracks of each kind (value kind read -> method): deface20 9 corner and 3 samples -> fused
samples (restore.fusion); centre16 6 mean and 6 centre -> model; size10 and opencv12 12 mean -> model; blocks8 10
mean, 2 centre -> model; blocks16 11 mean, 1 unclear -> model.

Leftover blocks. At a7eaddd (session-4 weights) blocks16 small and centre16 small were above 1.2 (1.25 and 1.24;
1.29 and 1.24 with the session-5 weights at 1edc8fe). In the 128 px head crop 16 blocks are 4 to 6 px cells whatever
the face size, and there the model draws each step on a grid line 1.2 to 2.2 px either side of it, wider than the
quarter-cell core (1.1 px) the old restore.evidence.smooth_grid_steps took out: the flanks stayed as double lines
(model output 5.26, after the old step removal 1.99 on bbaf2n blocks16 small). Now each step is fitted per row as a
line plus a blurred step of a given width over the two cells beside its grid line, and the width (0.6 to 2 px) and
the share replaced by a ramp are chosen per axis as those leaving the least gradient energy at the grid's period and
phase, measured at the paste's resolution (a crop upscaled 2x over a native face blurs its steps differently from
one upscaled 1.1x over a small one), or nearly the least with a smaller change (steadier in time). Every row is now
0.39 to 1.04, the worst centre16 native (below 1: less block structure at the grid period than the clean frame has,
not more); PSNR +0.00 to +0.24 dB over the a7eaddd rows (the session-5 weights and this change together; deface20's
fused tracks use neither). centre16 native was also held up by the last frame of lrwp9a, whose rect the locator
found 2 rows of blocks short above and 4 below (0.62 of its neighbours' area: not a part of the mosaic at
PARTIAL_AREA 0.6), so those rows were left as blocks: restore.tracks._partial now also compares a rect with the
nearest observation on each side (PARTIAL_AREA_NEAR 0.7) and pastes such a part on its neighbours' rect.

Flicker (new column): the output changes from frame to frame in ways the truth does not by 0.04 to 1.12 grey levels
more than bicubic interpolation of each frame's blocks on 17 of 19 rows (most on blocks8: 4.4 to 5.0 against 3.7 to
3.9), less on deface20 close-up and native (fused samples: 6.2 / 6.8 against 8.0 / 8.3), as `depix eval` finds for
the model on most protocols (weights/README.md).

`depix run` 720p after this change: 9.02 fps on 120 frames, 8.39 on 40 (bench_run.py, quiet box; 8.90 / 8.36
before), paste 38 ms a frame.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

KINDS = ("blocks16", "blocks8", "size10", "opencv12", "deface20", "centre16")
SMALL_FACE = 80  # px, face width of the `small` size
CLOSEUP = 512  # px, side of the `closeup` frames: a square around the face, scaled up or down to this
CLOSEUP_FACES = 2.6  # closeup side / face width (hair, chin and some background in the frame)
IDENTITY_CROP = 160  # px, head crops (geometry.head_box) scored by SFace
SIZES = ("native", "small", "closeup")
MOSAIC_SCALE = 1.3  # mosaic box / face box (depix pixelate, OpenCV recipe)
DEFACE_GROW = 0.3  # deface's scale_bb: each side grows by (mask_scale - 1) x the box size, mask_scale 1.3
DEFACE_SIZE = 20  # px, deface's default --mosaicsize
OUTSIDE_LEVELS = 4.0  # luma grey levels: a larger change outside the mosaic counts as changed
LOGO_GAP = 3  # px between the mosaic's right side and the logo
STRIP_MARGIN = 0.25  # strip crops: the mosaic rect grown by this share of its size


# ------------------------------------------------------------------------------------------ mosaics
def deface_mosaic(image: np.ndarray, box, size: int = DEFACE_SIZE):
    """deface's mosaic over a detector box: returns (frame, rect xyxy int, origin (x, y), cell)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    x1, y1, x2, y2 = np.round([x1 - DEFACE_GROW * w, y1 - DEFACE_GROW * h, x2 + DEFACE_GROW * w,
                               y2 + DEFACE_GROW * h]).astype(int)
    H, W = image.shape[:2]
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, W - 1), min(y2, H - 1)  # deface clips to the frame
    out = image.copy()
    for y in range(y1, y2, size):
        for x in range(x1, x2, size):  # cv2.rectangle(pt1, pt2) fills pt2 inclusive
            out[y:min(y2, y + size - 1) + 1, x:min(x2, x + size - 1) + 1] = image[y, x]
    return out, (x1, y1, x2 + 1, y2 + 1), (float(x1), float(y1)), (float(size), float(size))


def make_mosaic(kind: str, image: np.ndarray, face, cface):
    """(mosaiced frame, true rect xyxy int (frame-clipped), origin, cell (w, h), value kind) or None."""
    import cv2

    from depixcli.geometry.boxes import scale_box
    from depixcli.geometry.mosaic import apply_mosaic, clipped_rect, grid_from_block_size, grid_from_blocks

    if kind == "deface20":
        if cface is None:
            return None
        out, rect, origin, cell = deface_mosaic(image, cface)
        return out, rect, origin, cell, "corner"
    box = scale_box(face, MOSAIC_SCALE)
    if kind == "opencv12":
        H, W = image.shape[:2]
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if x1 - x0 < 12 or y1 - y0 < 12:
            return None
        out = image.copy()
        small = cv2.resize(image[y0:y1, x0:x1], (12, 12), interpolation=cv2.INTER_AREA)
        out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        return out, (x0, y0, x1, y1), (float(x0), float(y0)), ((x1 - x0) / 12, (y1 - y0) / 12), "mean"
    grid = {"blocks16": lambda: grid_from_blocks(box, 16), "blocks8": lambda: grid_from_blocks(box, 8),
            "size10": lambda: grid_from_block_size(box, 10),
            "centre16": lambda: grid_from_blocks(box, 16, "center")}[kind]()
    rect = clipped_rect(grid, image.shape[:2])
    if rect[2] <= rect[0] or rect[3] <= rect[1]:
        return None
    return (apply_mosaic(image, grid), rect, (grid.origin_x, grid.origin_y), (grid.cell_w, grid.cell_h),
            "centre" if grid.mode == "center" else "mean")


def draw_logo(image: np.ndarray, rect) -> np.ndarray:
    """A white 'TV' logo with a dark outline LOGO_GAP px right of `rect`, a third of its height."""
    import cv2

    out = image.copy()
    x1, y0, _, y1 = rect[2], rect[1], rect[2], rect[3]
    h = max((y1 - y0) // 3, 12)
    x0 = x1 + LOGO_GAP
    cv2.rectangle(out, (x0, y0), (x0 + h, y0 + h), (20, 20, 20), -1)
    cv2.putText(out, "TV", (x0 + 2, y0 + int(h * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, h / 40, (255, 255, 255),
                max(1, h // 12))
    return out


# ------------------------------------------------------------------------------------------ scores
def luma(x: np.ndarray) -> np.ndarray:
    from depixcli.evaluate.metrics import luma as _luma

    return _luma(x.astype(np.float64))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Luma PSNR of uint8 images (`metrics.psnr`), at most `PSNR_CAP` dB as in `depix eval`."""
    from depixcli.evaluate.config import PSNR_CAP
    from depixcli.evaluate.metrics import psnr as luma_psnr

    return min(float(luma_psnr(a, b)), PSNR_CAP)


def grid_energy(img: np.ndarray, origin, cell) -> float:
    """Energy of the luma gradient profiles (|d/dx| summed down the columns, |d/dy| along the rows) at the
    grid's own period and phase: the block structure of `img` (a crop of the mosaic rect), by the measure
    `restore.evidence.smooth_grid_steps` minimises (`grid_coefficient`, across x, then across y transposed)."""
    from depixcli.restore.evidence import grid_coefficient

    g = luma(img)
    if min(g.shape) < 2:
        return 0.0
    return sum(float(np.abs(grid_coefficient(x[None], x.shape[1], 0, o, c)[0]))
               for x, o, c in ((g, origin[0], cell[0]), (g.T, origin[1], cell[1])))


def flicker(frames, clean: list[np.ndarray], truth: list, t: int) -> float:
    """Mean |(Y[t] - Y[t-1]) - (Y'[t] - Y'[t-1])| (luma grey levels) of `frames` (a list or a dict by frame)
    against the `clean` frames over both frames' true mosaic rects (`truth`): change from frame t-1 to t that
    the truth does not have; nan without frame t-1."""
    if t == 0 or truth[t - 1] is None or (isinstance(frames, dict) and t - 1 not in frames):
        return float("nan")
    a, b = truth[t - 1][0], truth[t][0]
    sl = (slice(max(a[1], b[1]), min(a[3], b[3])), slice(max(a[0], b[0]), min(a[2], b[2])))
    if sl[0].stop <= sl[0].start or sl[1].stop <= sl[1].start:
        return float("nan")
    moved = luma(frames[t][sl]) - luma(frames[t - 1][sl])
    return float(np.abs(moved - (luma(clean[t][sl]) - luma(clean[t - 1][sl]))).mean())


def nanmean(values) -> float:
    """Mean of the finite values, nan when there are none (no identity scores: --no-identity)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def strip(path: Path, crops: list[np.ndarray]) -> None:
    import cv2

    h = 160
    row = [cv2.resize(c, (max(1, round(c.shape[1] * h / c.shape[0])), h), interpolation=cv2.INTER_AREA)
           for c in crops]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(row, 1), cv2.COLOR_RGB2BGR))


def identity(sface, face, clean: np.ndarray, out: np.ndarray, smooth: np.ndarray,
             dlib=None) -> tuple[float, float, float, float]:
    """SFace cosine to the clean head crop of the output's and of the smoothing's, aligned on the clean crop
    (depixcli.faces.identity's protocol), then the same from dlib's descriptor (`DlibIdentity.compare`, the
    judge `depix eval` uses beside SFace) when `dlib` is given; nan without a face, SFace or dlib."""
    nan = float("nan")
    if sface is None or face is None:
        return nan, nan, nan, nan
    from depixcli.faces.identity import cosine
    from depixcli.geometry.crop import crop, head_box

    box = head_box(face)
    crops = [crop(x, box, IDENTITY_CROP) for x in (clean, out, smooth)]
    al = sface.align(crops[0])
    e = sface.embed(crops, [al] * 3)
    d = dlib.compare(crops[0], al, crops[1:])[1] if dlib is not None else (nan, nan)
    return float(cosine(e[1], e[0])), float(cosine(e[2], e[0])), float(d[0]), float(d[1])


def closeup(frames: list[np.ndarray], faces: list) -> list[np.ndarray] | None:
    """`CLOSEUP` px square frames around the median face box (CLOSEUP_FACES face widths), or None when the
    square does not fit in the frame."""
    import cv2

    boxes = np.array([b for b in faces if b is not None], np.float64)
    if not len(boxes):
        return None
    x0, y0, x1, y1 = np.median(boxes, axis=0)
    side = int(round(CLOSEUP_FACES * (x1 - x0)))
    H, W = frames[0].shape[:2]
    side = min(side, H, W)
    cx, cy = int(round((x0 + x1) / 2 - side / 2)), int(round((y0 + y1) / 2 - side / 2))
    cx, cy = min(max(cx, 0), W - side), min(max(cy, 0), H - side)
    return [cv2.resize(f[cy:cy + side, cx:cx + side], (CLOSEUP, CLOSEUP),
                       interpolation=cv2.INTER_CUBIC if side < CLOSEUP else cv2.INTER_AREA) for f in frames]


# ------------------------------------------------------------------------------------------ one case
def run_case(clean: list[np.ndarray], faces, cfaces, kind: str, fps: float, work: Path, logo: bool,
             sample_evidence: bool, sface=None, dlib=None) -> dict | None:
    from depixcli.audit.attacks import attack_smooth
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.synthetic import write_test_clip
    from depixcli.io.video import read_frames
    from depixcli.restore import evidence as reconstruct
    from depixcli.restore.blend import MAX_FEATHER
    from depixcli.restore.config import RunConfig
    from depixcli.restore.evidence import interpolate_values, value_position
    from depixcli.restore.run import run_video

    made, truth = [], []
    for t, img in enumerate(clean):
        m = make_mosaic(kind, img, faces[t], cfaces[t]) if faces[t] is not None else None
        if m is not None and logo:
            img = draw_logo(img, m[1])
            clean[t] = img
            m = make_mosaic(kind, img, faces[t], cfaces[t])
        made.append(m[0] if m is not None else img)
        truth.append(m[1:] if m is not None else None)
    if sum(x is not None for x in truth) == 0:
        return None
    pix, out = work / "pix.mp4", work / "out.mp4"
    write_test_clip(pix, made, fps=fps, options=EncodeOptions(crf=18, preset="veryfast"))
    reconstruct.SAMPLE_EVIDENCE = sample_evidence
    t0 = time.perf_counter()
    stats = run_video(pix, out, RunConfig(crf=0, preset="ultrafast", quiet=True))
    wall = time.perf_counter() - t0
    mosaic = [f.image for f in read_frames(pix)]
    restored = [f.image for f in read_frames(out)]
    rows = []
    mid = [t for t, x in enumerate(truth) if x is not None][len([x for x in truth if x is not None]) // 2]
    strip_crops = None
    bicubic = {}  # t -> the mosaic frame with its rect replaced by bicubic interpolation of the block values
    for t, tr in enumerate(truth):
        if tr is None or t >= len(restored):
            continue
        rect, origin, cell, vkind = tr
        x0, y0, x1, y1 = rect
        sl = (slice(y0, y1), slice(x0, x1))
        cmax = max(cell)
        smooth = attack_smooth(mosaic[t], cmax)
        fit = interpolate_values(mosaic[t], rect, origin, cell, value_position(vkind, cell))
        bic = np.clip(np.rint(fit[0]), 0, 255).astype(np.uint8) if fit is not None else mosaic[t][sl]
        bicubic[t] = mosaic[t].copy()
        bicubic[t][sl] = bic
        o = (origin[0] - x0, origin[1] - y0)
        e_true = grid_energy(clean[t][sl], o, cell)
        g = int(np.ceil(MAX_FEATHER)) + 1
        ring = np.ones(clean[t].shape[:2], bool)
        ring[max(y0 - g, 0):y1 + g, max(x0 - g, 0):x1 + g] = False
        d = np.abs(luma(restored[t]) - luma(mosaic[t]))
        ident = identity(sface, faces[t], clean[t], restored[t], smooth, dlib)
        rows.append({
            "psnr_out": psnr(restored[t][sl], clean[t][sl]), "psnr_smooth": psnr(smooth[sl], clean[t][sl]),
            "psnr_bicubic": psnr(bic, clean[t][sl]), "psnr_mosaic": psnr(mosaic[t][sl], clean[t][sl]),
            "leftover": grid_energy(restored[t][sl], o, cell) / max(e_true, 1e-6),
            "leftover_mosaic": grid_energy(mosaic[t][sl], o, cell) / max(e_true, 1e-6),
            "changed_in": float((d[sl] > 0.5).mean()),
            "changed_out": float((d[ring] > OUTSIDE_LEVELS).mean()) if ring.any() else 0.0,
            "face_px": float(faces[t][2] - faces[t][0]) if faces[t] is not None else float("nan"),
            "sface_out": ident[0], "sface_smooth": ident[1], "dlib_out": ident[2], "dlib_smooth": ident[3],
            "flicker_out": flicker(restored, clean, truth, t), "flicker_bicubic": flicker(bicubic, clean, truth, t),
        })
        if t == mid:
            H, W = clean[t].shape[:2]
            m = int(STRIP_MARGIN * max(x1 - x0, y1 - y0))
            if logo:
                m = max(m, (y1 - y0) // 3 + 2 * LOGO_GAP)
            s2 = (slice(max(y0 - m, 0), min(y1 + m, H)), slice(max(x0 - m, 0), min(x1 + m, W)))
            strip_crops = [clean[t][s2], mosaic[t][s2], smooth[s2], restored[t][s2]]
    res = {k: nanmean([r[k] for r in rows]) for k in rows[0]}
    res.update(frames=len(rows), wall_s=wall, summary=stats.mosaics)
    return res, strip_crops


# ------------------------------------------------------------------------------------------ main
def face_boxes(frames: list[np.ndarray], detector) -> list:
    """Largest detected face box per frame (None where none)."""
    out = []
    for f in frames:
        dets = detector.detect(f)
        out.append(max((d.box for d in dets), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), default=None))
    return out


def smooth_track(boxes: list) -> list:
    """YuNet boxes smoothed over time as `depix pixelate`'s tracks are (track.smooth_boxes), gaps kept."""
    from depixcli.faces.track import TrackConfig, smooth_boxes

    idx = [i for i, b in enumerate(boxes) if b is not None]
    if len(idx) < 2:
        return boxes
    sm = smooth_boxes(np.array([boxes[i] for i in idx], np.float64), TrackConfig().sigma)
    out = list(boxes)
    for k, i in enumerate(idx):
        out[i] = sm[k]
    return out


def main(argv=None) -> int:
    import cv2

    from depixcli.faces.detect import load_detector
    from depixcli.io.video import probe, read_frames

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clips_csv")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--clips", type=int, default=4, help="first N val clips")
    ap.add_argument("--only", nargs="*", default=None, help="clip file names to use instead of the first N")
    ap.add_argument("--max-frames", type=int, default=24)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=SIZES)
    ap.add_argument("--no-identity", action="store_true", help="skip the SFace and dlib scores")
    ap.add_argument("--sample-evidence", default="on", choices=["on", "off", "both"])
    ap.add_argument("--logo", action="store_true")
    args = ap.parse_args(argv)

    root = Path(args.clips_csv).resolve().parent
    with open(args.clips_csv, newline="") as fh:
        val = [r["file"] for r in csv.DictReader(fh) if r["split"] == "val"]
    clips = [c for c in val if Path(c).name in args.only] if args.only else val[:args.clips]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    yunet, centerface = load_detector("yunet"), load_detector("centerface")
    sface = dlib = None
    if not args.no_identity:
        from depixcli.faces.identity import SFaceIdentity, load_dlib

        sface = SFaceIdentity()
        dlib, why = load_dlib()
        print(why, flush=True)
    results = []
    for n, rel in enumerate(clips):
        path = root / rel
        fps = float(probe(path).fps)
        frames = [f.image for _, f in zip(range(args.max_frames), read_frames(path))]
        raw = face_boxes(frames, yunet)
        widths = [b[2] - b[0] for b in raw if b is not None]
        if not widths:
            continue
        for size in args.sizes:
            k = 1.0
            if size == "small":
                k = SMALL_FACE / float(np.median(widths))
                if k > 1 / 1.15:
                    continue
            if size == "closeup":
                imgs = closeup(frames, raw)
                if imgs is None:
                    continue
            else:
                imgs = frames if k == 1.0 else [cv2.resize(f, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
                                                for f in frames]
            faces = smooth_track(raw if size == "native" else face_boxes(imgs, yunet))
            cfaces = face_boxes(imgs, centerface)
            cases = [(kind, False) for kind in args.kinds]
            if args.logo and n == 0 and size == "native":
                cases.append(("blocks16", True))
            for kind, logo in cases:
                evid = ([True, False] if args.sample_evidence == "both" else [args.sample_evidence == "on"]) \
                    if kind in ("deface20", "centre16") else [True]
                for ev in evid:
                    name = kind + ("+logo" if logo else "") + ("" if ev or kind not in ("deface20", "centre16")
                                                               else "/noevid")
                    work = out_dir / "work"
                    work.mkdir(exist_ok=True)
                    got = run_case(list(imgs), faces, cfaces, kind, fps, work, logo, ev, sface, dlib)
                    if got is None:
                        continue
                    res, crops = got
                    res.update(clip=Path(rel).name, kind=name, size=size)
                    results.append(res)
                    if crops is not None:
                        strip(out_dir / f"{Path(rel).stem}__{name.replace('/', '-')}__{size}.png", crops)
                    found = ", ".join(f"{m['values']}/{m['anchor']}/{m['restored_with']}" for m in res["summary"])
                    print(f"{Path(rel).name:40s} {name:18s} {size:6s} out {res['psnr_out']:.2f} smooth "
                          f"{res['psnr_smooth']:.2f} bicubic {res['psnr_bicubic']:.2f} leftover "
                          f"{res['leftover']:.2f} (mosaic {res['leftover_mosaic']:.2f}) changed in "
                          f"{res['changed_in']:.3f} out {res['changed_out']:.4f} sface {res['sface_out']:.3f} "
                          f"(smooth {res['sface_smooth']:.3f}) dlib {res['dlib_out']:.3f} "
                          f"(smooth {res['dlib_smooth']:.3f}) [{found}]", flush=True)
    (out_dir / "mosaics.json").write_text(json.dumps(results, indent=1))
    print("\n| kind | size | clips | PSNR out | - smoothing | - bicubic | leftover ratio | changed in rect |"
          " changed outside | SFace out | SFace smoothing | dlib out | dlib smoothing | flicker out | bicubic |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    keys = sorted({(r["kind"], r["size"]) for r in results})
    for kind, size in keys:
        rs = [r for r in results if r["kind"] == kind and r["size"] == size]

        def m(k, rs=rs):
            return nanmean([r[k] for r in rs])
        print(f"| {kind} | {size} | {len(rs)} | {m('psnr_out'):.2f} | {m('psnr_out') - m('psnr_smooth'):+.2f} | "
              f"{m('psnr_out') - m('psnr_bicubic'):+.2f} | {m('leftover'):.2f} | {m('changed_in'):.3f} | "
              f"{m('changed_out'):.4f} | {m('sface_out'):.3f} | {m('sface_smooth'):.3f} | {m('dlib_out'):.3f} | "
              f"{m('dlib_smooth'):.3f} | {m('flicker_out'):.2f} | {m('flicker_bicubic'):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
