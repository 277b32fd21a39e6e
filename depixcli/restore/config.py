"""What `depix run` is told (`RunConfig`) and what it reports (`RunStats`)."""

from __future__ import annotations

import copy
import dataclasses
import threading
from dataclasses import dataclass, field

from depixcli.errors import ConfigError, OptionError
from depixcli.io.video import TimeWindow

POLL_S = 0.1  # s, how often a blocked thread checks whether the run was aborted
MATCH_IOU = 0.3  # IoU: a frame's mosaic observation must overlap its track's box this much to be pasted there

# How a track is restored (`restore.classify.restore_method`), by its block value kind: (inside the model's range
# of blocks across the face, outside it). Top-left samples are fused over frames (`restore.fusion`): on deface's
# mosaics of val clips the model (with grid input too) stayed under bicubic interpolation of the samples, which
# fusion never is (bench/bench_mosaics.py); the model keeps block means and centre samples, where it wins.
MODEL = "model"
FUSION = "fused samples"  # restore.fusion.fuse_samples: the samples of frames t-k..t+k, registered to frame t
INTERPOLATION = "interpolated block values"  # restore.evidence.interpolate_values
SMOOTHING = "smoothed mosaic"  # restore.blend.smooth_values: values that cannot be placed in their blocks
METHODS = {
    "mean": (MODEL, INTERPOLATION),
    "unclear": (MODEL, SMOOTHING),
    "centre": (MODEL, FUSION),
    "corner": (FUSION, FUSION),
    "samples": (FUSION, FUSION),  # top-left samples favoured on few blocks: fused as top-left samples
}


@dataclass(frozen=True)
class RunConfig:
    weights: str | None = None  # weights file; None: model.weights.default_weights_path()
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 16  # stacks per model call
    region: tuple[int, int, int, int] | None = None  # x, y, w, h px: one fixed mosaic on every frame
    boxes: str | None = None  # JSON sidecar written by `depix pixelate` (faces and grids per frame)
    pixelate: int | None = None  # research mode: pixelate detected faces N x N blocks first
    side_by_side: bool = False  # write original | pixelated | reconstructed (with --pixelate)
    detector: str | None = None  # --pixelate: its face detector (default yunet); else: second opinion
    codec: str = "libx264"
    crf: int = 18
    preset: str = "medium"
    quiet: bool = False
    window: TimeWindow | None = None  # only this part of the video (--start / --duration / --max-frames)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.pixelate is not None and self.pixelate < 1:
            raise OptionError("pixelate", f"needs N >= 1 blocks, got {self.pixelate}")
        if self.side_by_side and self.pixelate is None:
            raise OptionError("side_by_side", "needs pixelate N (it compares against the clean original)")
        if sum(v is not None for v in (self.region, self.boxes, self.pixelate)) > 1:
            raise ConfigError("use at most one of region, boxes and pixelate")
        if self.boxes is not None and self.window is not None and self.window.start_s > 0:
            raise OptionError("boxes", "with a start time: the sidecar numbers the frames of the whole video")


@dataclass
class RunStats:
    frames: int = 0
    frames_with_faces: int = 0
    tracks: int = 0
    stacks: int = 0  # face crops reconstructed
    block_sizes: list = field(default_factory=list)  # (cell_w, cell_h) px median per track
    source: str = ""  # where the mosaics came from: located | region | boxes | pixelate
    copied: bool = False  # nothing to reconstruct: input copied
    not_faces: int = 0  # mosaic tracks left alone: the --detector found no face on them
    stage_s: dict = field(default_factory=dict)  # s of work per stage, both passes (pass 2 stages overlap)
    wall_s: float = 0.0
    max_buffered_frames: int = 0  # frames waiting for the model at once (+ <= 3 * QUEUE_FRAMES in queues)
    max_buffered_crops: int = 0  # face crops held at once for window stacks
    metrics: dict = field(default_factory=dict)  # --pixelate: name -> {"pixelated": x, "reconstructed": y}
    mosaics: list = field(default_factory=list)  # per track: `mosaic_summary`

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:  # pipeline threads add concurrently
            self.stage_s[stage] = self.stage_s.get(stage, 0.0) + seconds

    def to_dict(self) -> dict:
        """JSON-ready summary (`depix run --json`)."""
        d = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)
             if not f.name.startswith("_")}
        d["block_sizes"] = [list(b) for b in self.block_sizes]
        d["fps"] = self.fps
        return d
