"""Reconstruct pixelated faces: mosaic region -> head crop -> window stack -> model -> feathered paste.

Pure geometry and blending functions plus one small `Reconstructor` that owns the network. Nothing here
keeps per-frame state; the streaming order lives in `depixcli.run`.

Conventions at this module's boundary:
- frames `(H, W, 3)` uint8 RGB; rects and boxes `(x0, y0, x1, y1)` float, continuous pixel coordinates;
- crops `(S, S, 3)` uint8 RGB, S = the model's `crop_size`;
- model stacks `(B, F, S, S, 3)` uint8 here, `(B, F, 3, S, S)` float in [0, 1] inside the model,
  F = 2*window + 1 with the frame to reconstruct at F // 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depixcli.errors import WeightsError
from depixcli.geometry import CropBox, crop, head_box, uncrop

MOSAIC_SCALE = 1.3  # mosaic rect side / tight face box side, as `depix pixelate` and training place it
FULL_FRAME_COVER = 0.85  # a mosaic covering this fraction of the frame area: the video is a face crop
FEATHER_FRAC = 0.06  # feather width / longer side of the mosaic rect
MIN_FEATHER = 2.0  # px, narrowest feather
# Low-pass sigma of the colour match, in mosaic cells. Above ~0.5 no block pattern leaks in; larger keeps
# more of the model's own mid frequencies: pasting the true crop into a val clip (lipnet bbaf2n, 8 and 16
# blocks) gave a mean error of 4.5 grey levels at 0.7 cells, 3.7 at 2 and 3.6 at 3, and a smooth colour
# shift of the reconstruction (+-20 levels) was removed just as well at every sigma.
COLOUR_SIGMA_CELLS = 2.0
DEFAULT_CELLS = 16  # cells across a mosaic whose block size is unknown (the paper's 16 x 16)
MIN_COLOUR_SIGMA = 1.0  # px
PROJECT = True  # pull each reconstruction back to the observed block means before pasting (project_crop)
FLIP_ENSEMBLE = True  # average each reconstruction with that of the mirrored stack (Reconstructor)
DEFAULT_WEIGHTS_NAME = "depix-default.safetensors"
WEIGHTS_ENV = "DEPIX_WEIGHTS"  # environment variable naming a weights file; overrides the shipped one


# --------------------------------------------------------------------------------------------- geometry
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
    """Feather width in px, proportional to the mosaic (face) size."""
    x0, y0, x1, y1 = (float(v) for v in rect)
    return max(MIN_FEATHER, FEATHER_FRAC * max(x1 - x0, y1 - y0))


def colour_sigma(rect, cell_px: float | None) -> float:
    """Low-pass sigma (px) of the colour match: `COLOUR_SIGMA_CELLS` mosaic cells."""
    if cell_px is None or cell_px <= 0:
        x0, y0, x1, y1 = (float(v) for v in rect)
        cell_px = max(x1 - x0, y1 - y0) / DEFAULT_CELLS
    return max(MIN_COLOUR_SIGMA, COLOUR_SIGMA_CELLS * float(cell_px))


# --------------------------------------------------------------------------------------------- blending
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
    import cv2

    def low(x):
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)

    return recon + (low(reference) - low(recon))


def project_crop(recon: np.ndarray, source_crop: np.ndarray, box: CropBox, rect, cell_px: float) -> np.ndarray:
    """`degrade.project_to_mosaic` in crop space: `(S, S, 3)` uint8 reconstruction and mosaiced source crop of
    `box`, the mosaic `rect` (whole cells, a grid line on its corner) and cell side `cell_px` in frame px ->
    `(S, S, 3)` uint8 whose block means over the mosaic's grid are the observed ones (smoothly)."""
    import torch

    from depixcli.degrade import project_to_mosaic

    S = recon.shape[0]
    scale = S / box.size
    bx0, by0, _, _ = box.xyxy
    x0, y0, x1, y1 = (float(v) for v in rect)
    crect = np.clip([(x0 - bx0) * scale, (y0 - by0) * scale, (x1 - bx0) * scale, (y1 - by0) * scale], 0, S)
    if crect[2] - crect[0] < 2 * cell_px * scale or crect[3] - crect[1] < 2 * cell_px * scale:
        return recon

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0

    out = project_to_mosaic(t(recon), t(source_crop), torch.tensor([[(x0 - bx0) * scale, (y0 - by0) * scale]]),
                            torch.full((1, 2), cell_px * scale), torch.tensor(crect[None], dtype=torch.float32))
    return (out[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


def paste(
    frame: np.ndarray,
    recon: np.ndarray,
    box: CropBox,
    rect,
    cell_px: float | None = None,
    source_crop: np.ndarray | None = None,
    inplace: bool = False,
) -> np.ndarray:
    """Blend the `(S, S, 3)` uint8 reconstruction `recon` of crop `box` over the mosaic `rect` of `frame`.

    `source_crop` is the same crop of `frame` (the model's centre input; recomputed when None): its
    low frequencies replace the reconstruction's (colour match, done in crop space where it is cheap).
    With the mosaic's cell size known and `PROJECT`, the reconstruction is first pulled back to the block
    means observed in `source_crop` (`project_crop`). The result is warped back into the frame with
    `geometry.uncrop` (the half-pixel correct inverse of
    `geometry.crop`) and blended with the feathered mask. Returns an `(H, W, 3)` uint8 frame
    (`frame` itself, changed, when `inplace`); pixels outside the mask keep their exact values.
    """
    import cv2

    H, W = frame.shape[:2]
    S = recon.shape[0]
    out = frame if inplace else frame.copy()
    if source_crop is None:
        source_crop = crop(frame, box, S)
    if PROJECT and cell_px:
        recon = project_crop(recon, source_crop, box, rect, cell_px)
    sigma = max(colour_sigma(rect, cell_px) * S / box.size, 0.5)  # crop px
    matched = colour_match(recon.astype(np.float32), source_crop.astype(np.float32), sigma)
    matched = np.clip(np.rint(matched), 0, 255).astype(np.uint8)
    rect = _past_frame_borders(rect, (H, W), feather_width(rect))
    region = _paste_region(box, S, rect, (H, W))
    rx0, ry0, rx1, ry1 = region
    if rx1 <= rx0 or ry1 <= ry0:
        return out
    warped, (px0, py0, _, _) = uncrop(matched, box, (H, W))  # half-pixel correct inverse of crop()
    patch = warped[ry0 - py0 : ry1 - py0, rx0 - px0 : rx1 - px0]
    mask = blend_mask(rect, feather_width(rect), region) * _inside_crop(box, S, region)
    reference = out[ry0:ry1, rx0:rx1]
    blended = cv2.blendLinear(patch, reference, mask, 1.0 - mask)
    keep = mask <= 0.0
    blended[keep] = reference[keep]  # untouched pixels stay bit-exact
    out[ry0:ry1, rx0:rx1] = blended
    return out


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


def _paste_region(box: CropBox, S: int, rect, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer frame region a paste may change: mask support, inside the crop, inside the frame."""
    H, W = frame_hw
    half = feather_width(rect)  # the ramp reaches this far outside the rect
    step = box.size / S
    bx0, by0, bx1, by1 = box.xyxy
    x0, y0, x1, y1 = (float(v) for v in rect)
    rx0 = max(int(np.floor(max(x0 - half, bx0 + step / 2))), 0)
    ry0 = max(int(np.floor(max(y0 - half, by0 + step / 2))), 0)
    rx1 = min(int(np.ceil(min(x1 + half, bx1 - step / 2))), W)
    ry1 = min(int(np.ceil(min(y1 + half, by1 - step / 2))), H)
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


# --------------------------------------------------------------------------------------------- model
def default_weights_path() -> Path:
    """The weights `depix run` uses without `--weights`: `$DEPIX_WEIGHTS`, else the shipped file.

    Raises WeightsError naming the path looked at when the file does not exist.
    """
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise WeightsError(f"{WEIGHTS_ENV}={env} does not name a weights file")
        return path
    path = Path(__file__).resolve().parent.parent / "weights" / DEFAULT_WEIGHTS_NAME
    if not path.is_file():
        raise WeightsError(
            f"no default weights at {path}; pass --weights PATH or set {WEIGHTS_ENV} (train one with `depix train`)"
        )
    return path


def resolve_device(name: str) -> str:
    """`auto` -> `cuda` when available, else `cpu`; asking for `cuda` without a GPU raises ConfigError."""
    import torch

    from depixcli.errors import ConfigError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return name


@dataclass(frozen=True)
class ModelGeometry:
    crop_size: int  # px, S
    window: int  # w: frames on each side of the centre
    stride: int  # d: frames between neighbours in the stack

    @property
    def frames(self) -> int:
        return 2 * self.window + 1

    @property
    def reach(self) -> int:
        """Frames a stack reaches before and after its centre (w * d)."""
        return self.window * self.stride


class Reconstructor:
    """The network plus its device policy: bf16 autocast + channels_last on CUDA, fp32 on CPU.

    With `flip` (default `FLIP_ENSEMBLE`) every stack is also reconstructed mirrored and the two results are
    averaged (a face is nearly symmetric, the model's errors are not): +0.1 to +0.17 dB on val for twice
    the model time, which is small next to locating and encoding on CPU.
    """

    def __init__(self, model, device: str = "cpu", flip: bool | None = None):
        import torch

        self.flip = FLIP_ENSEMBLE if flip is None else flip
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # fixed crop size: pick the fastest kernels once
        cfg = model.config
        self.geometry = ModelGeometry(int(cfg.crop_size), int(cfg.window), int(cfg.stride))

    @property
    def uses_grid(self) -> bool:
        """True when the network takes grid maps (`models.grid_maps`) beside the frames."""
        return bool(getattr(self.model.config, "grid_input", False))

    def __call__(self, stacks: np.ndarray, maps=None) -> np.ndarray:
        """`(B, F, S, S, 3)` uint8 mosaiced crop stacks -> `(B, S, S, 3)` uint8 reconstructed centres.

        maps: the stacks' grid maps `(B, F, GRID_CHANNELS, S, S)` float (numpy or torch; `models.grid_maps`),
        or None where the grid is unknown; ignored by a network without grid input.
        """
        import torch

        from depixcli.models import flip_maps

        cuda = self.device.type == "cuda"
        x = torch.from_numpy(np.ascontiguousarray(stacks)).to(self.device)  # uint8 over the bus: 4x less
        x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)  # (B, F, 3, S, S) float [0, 1]
        m = None
        if maps is not None and self.uses_grid:
            m = torch.as_tensor(maps, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                if self.flip:
                    B = x.shape[0]
                    both = (torch.cat([x, x.flip(-1)]),) + ((torch.cat([m, flip_maps(m)]),) if m is not None else ())
                    y = self.model(*both).float()
                    y = (y[:B] + y[B:].flip(-1)) * 0.5
                else:
                    y = self.model(*((x,) if m is None else (x, m)))
            if not bool(torch.isfinite(y).all()):  # clamp would turn NaN into a flat patch, silently
                raise WeightsError("the model produced NaN or Inf values on this input; its weights are unusable")
            y = (y.float().clamp_(0.0, 1.0) * 255.0).round_().to(torch.uint8)
            return y.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def load_reconstructor(weights: str | Path | None = None, device: str = "auto") -> Reconstructor:
    """Load a weights file (default: `default_weights_path()`) onto `device` ('auto', 'cpu', 'cuda')."""
    from depixcli.weights import load_model

    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    dev = resolve_device(device)
    return Reconstructor(load_model(path, device=dev), dev)


def gather_stack(crops_by_pos, centre: int, count: int, window: int, stride: int) -> np.ndarray:
    """`(F, S, S, 3)` stack for track position `centre` of a `count`-long track; clamped at the ends.

    `crops_by_pos(pos)` returns the crop at a track position.
    """
    from depixcli.models import window_indices

    return np.stack([crops_by_pos(p) for p in window_indices(centre, count, window, stride)])
