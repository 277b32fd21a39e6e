"""`run_video`: the data flow of `depix run`, wired in one screen (see `depixcli.restore`)."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from pathlib import Path

import numpy as np

from depixcli.io.encode import EncodeOptions, VideoWriter
from depixcli.io.files import atomic_path
from depixcli.io.progress import bar_factory
from depixcli.io.video import check_paths, probe, read_frames, window_info
from depixcli.model.reconstructor import load_reconstructor
from depixcli.restore.classify import mosaic_summary
from depixcli.restore.config import RunConfig, RunStats
from depixcli.restore.find import find_tracks
from depixcli.restore.research import MetricSums
from depixcli.restore.stacks import PendingFrame, reconstruct_pass


def run_video(
    in_path: str | Path, out_path: str | Path, cfg: RunConfig = RunConfig(), progress_factory=None
) -> RunStats:
    """Reconstruct every pixelated face of `in_path` into `out_path`; returns what was done and timings.

    `progress_factory(desc, total)` returns a tqdm-like object (update/close); default: tqdm on stderr,
    silenced by `cfg.quiet`.
    """
    t_start = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    info = window_info(probe(in_path), cfg.window)
    check_paths(in_path, out_path)
    options = EncodeOptions(codec=cfg.codec, crf=cfg.crf, preset=cfg.preset)
    model = load_reconstructor(cfg.weights, cfg.device)  # fail on bad weights before any long work
    make_progress = progress_factory or bar_factory(cfg.quiet)
    stats = RunStats()
    with contextlib.closing(make_progress("pass 1/2 find", info.frames or None)) as bar:
        tracks = find_tracks(in_path, info, cfg, stats, bar)  # pass 1: decode, locate, track, classify
    count_tracks(stats, tracks)
    if not tracks:
        copy_or_reencode(in_path, out_path, info, options, stats, cfg.window)
    else:
        with contextlib.closing(make_progress("pass 2/2 reconstruct", stats.frames)) as bar:
            encode_pass(in_path, out_path, info, tracks, model, options, cfg, stats, bar)  # pass 2 + encode
    stats.wall_s = time.perf_counter() - t_start
    return stats


def count_tracks(stats: RunStats, tracks: list) -> None:
    """Fill in the tracks' share of `stats`: count, block sizes, mosaic summaries, frames with faces."""
    stats.tracks = len(tracks)
    for tr in tracks:
        known = tr.cells[~np.isnan(tr.cells[:, 0])]
        if len(known):
            stats.block_sizes.append(tuple(float(v) for v in np.median(known, axis=0)))
        stats.mosaics.append(mosaic_summary(tr))
    covered = np.zeros(stats.frames, bool)
    for tr in tracks:
        covered[tr.start : tr.end + 1] = True
    stats.frames_with_faces = int(covered.sum())


def encode_pass(in_path: Path, out_path: Path, info, tracks: list, model, options: EncodeOptions, cfg: RunConfig,
                stats: RunStats, bar) -> None:
    """Pass 2 (`reconstruct_pass`) into the encoder, frame by frame in order: the restored frame (with
    --side-by-side: original | pixelated | restored), its --pixelate scores added up, audio copied."""
    like = dataclasses.replace(info, width=3 * info.width) if cfg.side_by_side else info
    by_id = {tr.id: tr for tr in tracks}
    scores = MetricSums()
    written = 0

    def write(p: PendingFrame, image: np.ndarray) -> None:
        nonlocal written
        if cfg.pixelate is not None and p.recons:
            scores.add(p.original, p.image, image, [by_id[tid].crop_box(p.frame.index) for tid in p.recons])
        if cfg.side_by_side:
            original = p.original if p.original is not None else p.frame.image
            image = np.concatenate([original, p.image, image], axis=1)
        t0 = time.perf_counter()
        writer.write(image, pts=p.frame.pts)
        stats.add("encode", time.perf_counter() - t0)
        if not written and hasattr(bar, "reset"):  # the first frame waited for the pipeline to fill: time the
            bar.reset()  # rate from here, or the ETA is that wait times the frame count (minutes for seconds)
        written += 1
        bar.update(1)

    with VideoWriter(out_path, like, options, audio_from=in_path if info.has_audio else None,
                     part=cfg.window is not None) as writer:
        reconstruct_pass(in_path, tracks, model, write, cfg, stats)
        t0 = time.perf_counter()
    stats.add("encode", time.perf_counter() - t0)  # flush + audio mux
    stats.frames = written
    stats.metrics.update(scores.means())


def copy_or_reencode(in_path: Path, out_path: Path, info, options, stats: RunStats, window=None) -> None:
    """Nothing to reconstruct: copy the file (same container, whole video) or re-encode it (the part) untouched."""
    stats.copied = True
    if in_path.suffix.lower() == out_path.suffix.lower() and window is None:
        with atomic_path(out_path) as tmp:
            shutil.copyfile(in_path, tmp)
        return
    with VideoWriter(out_path, info, options, audio_from=in_path if info.has_audio else None,
                     part=window is not None) as writer:
        for frame in read_frames(in_path, window):
            writer.write(frame.image, pts=frame.pts)
