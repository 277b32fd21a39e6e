"""Pure crop / paste geometry between video frames and square head crops.

Conventions (used everywhere in depix):
- Frames are `(H, W, 3)` uint8 RGB arrays.
- Boxes are `(x0, y0, x1, y1)` floats in *continuous* pixel coordinates: pixel column i covers
  [i, i + 1), so a box over pixels 10..19 is (10, ., 20, .). Pixel centres sit at i + 0.5.
- A `CropBox` is a square `(cx, cy, size)` in the same continuous coordinates. Cropping maps it
  onto an `S x S` crop whose pixel u covers [cx - size/2 + u*size/S, ... + size/S).

No function here keeps state between frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import cv2

HEAD_SCALE = 1.8  # head crop side / max(face box w, h): includes hair and chin, as in the paper's crops
HEAD_SHIFT = 0.1  # head crop centre moved up by this fraction of the face box height (hair > chin)


@dataclass(frozen=True)
class CropBox:
    cx: float  # px, continuous coordinates
    cy: float  # px
    size: float  # px, side of the square

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


def head_box(face_xyxy, scale: float = HEAD_SCALE, shift: float = HEAD_SHIFT) -> CropBox:
    """Square head crop around a (tight) detector face box: hair and chin included."""
    x0, y0, x1, y1 = (float(v) for v in face_xyxy)
    w, h = x1 - x0, y1 - y0
    return CropBox((x0 + x1) / 2, (y0 + y1) / 2 - shift * h, max(w, h) * scale)


def crop_matrix(box: CropBox, out_size: int) -> np.ndarray:
    """2x3 affine matrix mapping crop pixel indices (u, v) to frame pixel indices (x, y).

    Index coordinates (pixel centres at integers) are what cv2.warpAffine uses.
    """
    s = box.size / out_size
    x0 = box.cx - box.size / 2
    y0 = box.cy - box.size / 2
    return np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]], dtype=np.float64)


def crop(frame: np.ndarray, box: CropBox, out_size: int) -> np.ndarray:
    """Resample the square `box` of `frame` to `(out_size, out_size, 3)`; outside the frame: edge pixels.

    Downscaling is anti-aliased (Gaussian prefilter of the region), so crops of large faces do not alias.
    """
    s = box.size / out_size
    x0, y0, x1, y1 = box.xyxy
    pad = int(np.ceil(2 * max(s, 1.0))) + 2
    H, W = frame.shape[:2]
    rx0, ry0 = max(int(np.floor(x0)) - pad, 0), max(int(np.floor(y0)) - pad, 0)
    rx1, ry1 = min(int(np.ceil(x1)) + pad, W), min(int(np.ceil(y1)) + pad, H)
    if rx1 <= rx0 or ry1 <= ry0:  # box wholly outside the frame: nearest edge pixels
        rx0, ry0 = min(max(rx0, 0), W - 1), min(max(ry0, 0), H - 1)
        rx1, ry1 = rx0 + 1, ry0 + 1
    roi = frame[ry0:ry1, rx0:rx1]
    if s > 1.25:
        sigma = 0.45 * np.sqrt(s * s - 1.0)
        roi = cv2.GaussianBlur(roi, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    m = crop_matrix(box, out_size)
    m[0, 2] -= rx0
    m[1, 2] -= ry0
    return cv2.warpAffine(
        roi, m, (out_size, out_size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def uncrop(image: np.ndarray, box: CropBox, frame_hw: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Warp a square crop (any dtype, `(S, S)` or `(S, S, C)`) back into frame geometry.

    Returns `(patch, (x0, y0, x1, y1))`: the patch covers the integer frame region it touches
    (clipped to the frame); outside the crop the patch is 0. Use the same call on a mask to blend.
    """
    H, W = frame_hw
    x0, y0, x1, y1 = box.xyxy
    rx0, ry0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    rx1, ry1 = min(int(np.ceil(x1)), W), min(int(np.ceil(y1)), H)
    if rx1 <= rx0 or ry1 <= ry0:
        return np.zeros((0, 0) + image.shape[2:], image.dtype), (rx0, ry0, rx0, ry0)
    m = crop_matrix(box, image.shape[0])
    m[0, 2] -= rx0
    m[1, 2] -= ry0
    patch = cv2.warpAffine(
        image, m, (rx1 - rx0, ry1 - ry0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return patch, (rx0, ry0, rx1, ry1)
