"""`depix eval`: score reconstructions of mosaiced head crops against the ground truth, on unseen people.

Data flow of `evaluate`:
    crop dataset (dataset.load_crops, split "val" by default: people never trained on)
    -> samples: K centre frames per track, evenly spread over its first 3/4 (protocols.centre_frames)
    -> per protocol, per sample: mosaic of the frames around the centre (protocols.mosaic_stack)
    -> methods: nearest (the mosaic itself), bicubic (of the true block values), each model (its own window)
       (methods.reconstruct_protocol)
    -> metrics: PSNR, SSIM and identity (judges.py), flicker and tOF on consecutive frames (temporal.py)
    -> report dict -> text table, JSON, PNG grid (report.py).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from depixcli.dataset.crops import load_crops, read_index
from depixcli.errors import ConfigError, DepixWarning, InputError
from depixcli.evaluate.config import EvalConfig
from depixcli.evaluate.judges import IdentityReference, identity_reference, score
from depixcli.evaluate.methods import LoadedModel, extra_rows, load_models, reconstruct_protocol
from depixcli.evaluate.protocols import (
    BASELINES,
    H264_CRF,
    PROTOCOL_NOTES,
    PROTOCOLS,
    Sample,
    choose_samples,
    track_boxes,
)
from depixcli.evaluate.report import metric_notes
from depixcli.evaluate.temporal import FLICKER_METRICS, reconstruct_runs, run_starts, score_runs
from depixcli.faces.identity import SFaceIdentity, load_dlib, rank1, spread_frames
from depixcli.io.files import sha256_file
from depixcli.io.progress import progress_bar
from depixcli.train.degrade import MosaicConfig


@dataclass(frozen=True, eq=False)
class EvalInputs:
    """The models, the identity judge and the evaluated samples of one `evaluate` call."""

    loaded: list[LoadedModel]
    sface: SFaceIdentity
    index: dict  # the dataset's index.json
    tracks: list  # dataset.CropTrack of the split
    samples: list[Sample]
    gts: np.ndarray  # (N, S, S, 3) uint8: the ground truth of every sample


def load_inputs(crop_dir: str | os.PathLike, models: Mapping[str, object], cfg: EvalConfig) -> EvalInputs:
    """Load the models, SFace and the split's tracks; choose the samples. Fails before the (slow) dataset load
    when a model or the identity models are missing, or a model's crop size differs from the dataset's."""
    loaded = load_models(models, cfg.device)
    sface = SFaceIdentity(cfg.models_dir)
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
    gts = np.stack([tracks[s.track].frames[s.centre] for s in samples])
    return EvalInputs(loaded, sface, index, tracks, samples, gts)


def score_protocol(protocol: str, inp: EvalInputs, ref: IdentityReference, method_names: list[str],
                   boxes: Sequence, example_ids: list[int], cfg: EvalConfig,
                   quiet: bool) -> tuple[dict, dict[str, np.ndarray], float]:
    """One protocol's report section, its example outputs and the seconds spent in the models."""
    outputs, seconds = reconstruct_protocol(protocol, inp.tracks, inp.samples, inp.gts, inp.loaded, cfg, quiet, boxes)
    per_sample = {
        name: score(outputs[name], inp.gts, ref, inp.sface, cfg.channel)
        for name in progress_bar(desc=f"{protocol} scores", unit="method", quiet=quiet, leave=False,
                                 iterable=method_names)
    }
    kind, blocks, h264 = PROTOCOLS[protocol]
    section = {
        "description": PROTOCOL_NOTES[kind].format(n=blocks) + (f", then H.264 crf {H264_CRF}" if h264 else ""),
        "mosaic_config": (asdict(MosaicConfig()) if kind == "random"
                          else {"blocks": blocks, "kind": kind, "h264_crf": H264_CRF if h264 else None}),
        "methods": {n: {k: float(v.mean()) for k, v in per_sample[n].items()} for n in method_names},
        "per_sample": {n: {k: v.tolist() for k, v in per_sample[n].items()} for n in method_names},
    }
    examples = {"gt": inp.gts[example_ids], **{n: outputs[n][example_ids] for n in method_names}}
    return section, examples, seconds


def add_flicker(section: dict, protocol: str, inp: EvalInputs, runs: list, boxes: Sequence, cfg: EvalConfig) -> float:
    """Add flicker and tOF of every method to a protocol's section; returns the seconds spent in the models."""
    run_outputs, run_truths, seconds = reconstruct_runs(
        protocol, inp.tracks, runs, {m.name: m.reconstructor for m in inp.loaded}, cfg, boxes, cfg.single_frame)
    temporal = score_runs(run_outputs, run_truths)
    for name, vals in temporal.items():
        section["methods"][name].update({m: vals[m] for m in FLICKER_METRICS})
    section["per_run"] = {name: vals["per_run"] for name, vals in temporal.items()}
    return seconds


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
    cfg.validate()
    times = {"start": time.perf_counter()}
    warn: list[str] = []
    if cfg.split != "val":
        msg = f"evaluating on split {cfg.split!r}: its people may have been seen in training"
        warn.append(msg)
        warnings.warn(DepixWarning(msg, advice="split"), stacklevel=2)
    inp = load_inputs(crop_dir, models, cfg)
    times["loaded"] = time.perf_counter()
    dlib, dlib_note = load_dlib() if cfg.use_dlib else (None, "dlib not used (turned off)")
    ref = identity_reference(inp.sface, dlib, inp.tracks, inp.samples, inp.gts, quiet)
    times["identity"] = time.perf_counter()

    method_names = [*BASELINES, *(m.name for m in inp.loaded)] + extra_rows(inp.loaded, cfg)
    boxes = track_boxes(inp.index, inp.tracks)
    example_ids = spread_frames(range(len(inp.samples)), cfg.grid_examples) if cfg.grid_examples else []
    runs = run_starts([len(t.frames) for t in inp.tracks], cfg.flicker_frames) if cfg.flicker_frames else []
    protocols: dict[str, dict] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    times["inference"] = times["flicker"] = 0.0
    for protocol in cfg.protocols:
        protocols[protocol], examples[protocol], seconds = score_protocol(
            protocol, inp, ref, method_names, boxes, example_ids, cfg, quiet)
        times["inference"] += seconds
        if runs:
            times["flicker"] += add_flicker(protocols[protocol], protocol, inp, runs, boxes, cfg)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    times["end"] = time.perf_counter()
    report = build_report(crop_dir, cfg, inp, ref, method_names, runs, times)
    report.update(dlib=dlib_note, warnings=warn, protocols=protocols, examples=examples)
    return report


def build_report(crop_dir, cfg: EvalConfig, inp: EvalInputs, ref: IdentityReference, method_names: list[str],
                 runs: list, times: dict) -> dict:
    """The report's sections other than the per-protocol scores, in the order the JSON has them."""
    tracks, samples, loaded = inp.tracks, inp.samples, inp.loaded
    n_people = len(ref.gallery.identities)
    infer_s = times["inference"]
    return {
        "config": asdict(cfg),
        "dataset": {
            "dir": str(crop_dir),
            "index_sha256": sha256_file(Path(crop_dir) / "index.json"),
            "split": cfg.split,
            "crop_size": int(inp.index["crop_size"]),
            "tracks": len(tracks),
            "identities": n_people,
            "samples": len(samples),
            "sample_list": [[tracks[s.track].track_id, s.centre] for s in samples],
            "flicker_runs": [[tracks[t].track_id, start, k] for t, start, k in runs],  # track, first frame, frames
        },
        "weights": {m.name: m.info for m in loaded},
        "methods": method_names,
        "metrics": metric_notes(cfg.channel),
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
        "identity_models": [str(p) for p in inp.sface.model_files],
        "dlib": None,
        "warnings": [],
        "protocols": {},
        "runtime": {
            "device": loaded[0].reconstructor.device.type if loaded else "cpu",
            "load_s": round(times["loaded"] - times["start"], 3),
            "identity_setup_s": round(times["identity"] - times["loaded"], 3),
            "inference_s": round(infer_s, 3),
            "flicker_inference_s": round(times["flicker"], 3),  # the models on the flicker runs
            "total_s": round(times["end"] - times["start"], 3),
            "samples_per_s_per_model": round(len(samples) * len(cfg.protocols) * len(loaded) / infer_s, 2)
            if loaded and infer_s > 0
            else None,
        },
        "examples": {},
    }
