"""Model configuration: crop size, stack window, architecture and widths (`ModelConfig`), and the stack window.

A weights file carries its `ModelConfig` as JSON (`model.weights`); the network is rebuilt from it alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from depixcli.errors import ConfigError, check_keys

CROP_SIZE = 128  # px, side of the square head crops
WINDOW = 2  # frames each side of the centre (paper w)
STRIDE = 5  # frames between stack members (paper d)
STN_SIZE = 32  # px, side of the LR copies the aligner sees (mosaics of 6-24 blocks across)
STN_GRID = 8  # cells per side of the free-form warp grid (paper: 8x8)
STN_MAX_OFFSET = 0.5  # largest grid offset, in normalised [-1, 1] coordinates (= 1/4 of the crop side)
STN_WIDTHS = (32, 64, 128, 256, 256)  # channels per U-Net level, bottleneck last
BASE_WIDTH = 64  # reconstruction U-Net widths = base * (1, 2, 4, 8, 8): paper 64-128-256-512-512
DISC_WIDTH = 64  # PatchGAN first-layer channels
ARCHS = ("unet", "compact")  # paper STN + U-Net at S x S | CompactNet at S/2 and S/4
COMPACT_WIDTH = 48  # CompactNet channels at S/2 (twice that at S/4)
COMPACT_BLOCKS = 2  # CompactNet residual blocks per stage (S/2 in, S/4, S/2 out)
GRID_CHANNELS = 4  # grid maps per frame: u, v (position against the block value's source, in cells), inside, sampled
ALIGN_SIZE = 32  # px, side of the LR copies the compact aligner estimates flow on
ALIGN_WIDTH = 32  # compact aligner channels at ALIGN_SIZE (twice that at half of it)
MAX_FLOW = 8.0  # px at crop_size, largest flow the compact aligner predicts


@dataclass(frozen=True)
class ModelConfig:
    crop_size: int = CROP_SIZE  # px
    window: int = WINDOW  # w: the stack holds F = 2w + 1 frames
    stride: int = STRIDE  # d: frames between stack members
    use_stn: bool = True  # align neighbours to the centre before reconstruction
    stn_size: int = STN_SIZE  # px
    stn_grid: int = STN_GRID  # cells per side
    stn_max_offset: float = STN_MAX_OFFSET  # normalised coordinates
    stn_widths: tuple[int, ...] = STN_WIDTHS
    width: int = BASE_WIDTH  # reconstruction U-Net base width
    residual: bool = True  # U-Net predicts a correction to the centre frame (beyond the paper: training starts
    #                        from the input instead of from noise, which converges much faster)
    arch: str = "unet"  # one of ARCHS
    compact_width: int = COMPACT_WIDTH  # arch "compact": channels at S/2
    compact_blocks: int = COMPACT_BLOCKS  # arch "compact": residual blocks per stage
    grid_input: bool = False  # arch "compact": per-frame grid maps (`grid_maps`) are a second input
    align: bool = False  # arch "compact": a flow aligner at `align_size` warps every neighbour onto the centre
    align_size: int = ALIGN_SIZE  # px
    align_width: int = ALIGN_WIDTH
    max_flow: float = MAX_FLOW  # px at crop_size

    @property
    def frames(self) -> int:
        return 2 * self.window + 1

    @property
    def widths(self) -> tuple[int, ...]:
        w = self.width
        return (w, 2 * w, 4 * w, 8 * w, 8 * w)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        check_keys(cls, d, "model config")
        d = dict(d)
        if "stn_widths" in d:
            d["stn_widths"] = tuple(int(v) for v in d["stn_widths"])
        cfg = cls(**d)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.window < 0 or self.stride < 1:
            raise ConfigError(f"window must be >= 0 and stride >= 1, got {self.window}, {self.stride}")
        if self.crop_size % 16 or self.stn_size % 16:
            raise ConfigError(f"crop_size and stn_size must be multiples of 16, got {self.crop_size}, {self.stn_size}")
        if len(self.stn_widths) != 5 or self.width < 1:
            raise ConfigError("stn_widths needs 5 entries and width must be >= 1")
        if self.arch not in ARCHS:
            raise ConfigError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.arch == "compact" and (self.use_stn or self.compact_width < 1 or self.compact_blocks < 0):
            raise ConfigError("arch 'compact' has no STN (use_stn=False) and needs compact_width >= 1, blocks >= 0")
        if (self.grid_input or self.align) and self.arch != "compact":
            raise ConfigError("grid_input and align are options of arch 'compact'")
        if self.align and (self.align_size % 8 or self.crop_size % self.align_size or self.align_width < 1):
            raise ConfigError(f"align_size must divide crop_size and be a multiple of 8, got {self.align_size}")


def window_indices(c: int, T: int, window: int, stride: int) -> list[int]:
    """Frame indices c + stride*j for j = -window..window, clamped to [0, T - 1] at track ends."""
    return [min(max(c + stride * j, 0), T - 1) for j in range(-window, window + 1)]
