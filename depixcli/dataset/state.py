"""A crop dataset being written: its index.json (new, added to, rewritten atomically after every clip), what an
earlier export already did (`existing_dataset`, `not_done`), what an interrupted one left behind, and why a
finished dataset could not be trained on (`split_problems`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from depixcli.dataset.config import CODEC, SAME_FOR_ADD, PrepareConfig
from depixcli.dataset.crops import FORMAT_NAME, FORMAT_VERSION, read_index
from depixcli.dataset.inputs import SPLITS, VAL_SPLIT, ClipInput
from depixcli.errors import ConfigError, DepixWarning, InputError, OutputError
from depixcli.geometry.crop import HEAD_SCALE, HEAD_SHIFT
from depixcli.io.files import TMP_TAG, write_atomic


def split_problems(index: dict) -> list[DepixWarning]:
    """Why `depix train` could not use a finished dataset: a split without tracks, and the cause (one warning
    each, to be issued)."""
    with_tracks = {e["split"] for e in index["tracks"]}
    problems = []
    for split in SPLITS:
        if split in with_tracks:
            continue
        faceless = sorted({c["identity"] for c in index.get("clips", []) if c["split"] == split and not c["tracks"]})
        advice = None
        if faceless:
            cause = f"its {len(faceless)} identit{'y' if len(faceless) == 1 else 'ies'} ({', '.join(faceless)}) " \
                    "gave no face track"
        elif split == VAL_SPLIT:
            cause, advice = "no identity was held out", "no_val"
        else:
            cause = "every identity is in val"
        problems.append(DepixWarning(f"no {split!r} tracks: {cause}; `depix train` needs tracks in both train and val",
                                     advice=advice))
    return problems


def split_counts(tracks: Sequence[dict]) -> tuple[tuple[str, int, int], ...]:
    """(split, identities, tracks) per split of index entries, by split name."""
    return tuple((sp, len({e["identity"] for e in tracks if e["split"] == sp}), sum(e["split"] == sp for e in tracks))
                 for sp in sorted({e["split"] for e in tracks}))


def existing_dataset(out: Path, cfg: PrepareConfig, add: bool) -> dict | None:
    """The dataset already in `out` (None: there is none); refuse to touch one without `add`."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise OutputError(f"{out}: exists and is not a directory")
    if not (out / "index.json").is_file():
        if any(out.iterdir()) and not add:
            raise OutputError(f"{out}: directory is not empty", advice="nonempty")
        return None
    index = read_index(out, unfinished_ok=True)
    state = "finished" if index.get("complete", True) else "unfinished"
    if not add:
        raise OutputError(f"{out}: already holds a crop dataset ({state}, {len(index['tracks'])} tracks)",
                          advice="dataset_exists")
    old_cfg = index.get("config", {})
    new_cfg = asdict(cfg)
    for key in SAME_FOR_ADD:
        if key in old_cfg and old_cfg[key] != new_cfg[key]:
            raise ConfigError(f"{out}: the dataset was made with {key}={old_cfg[key]!r}, this run has "
                              f"{key}={new_cfg[key]!r}", advice="add_settings")
    if "clips" not in index:  # made before clips were listed: one record per source with tracks
        by_source: dict[str, dict] = {}
        for e in index["tracks"]:
            rec = by_source.setdefault(e["source"], {"source": e["source"], "identity": e["identity"],
                                                     "split": e["split"], "tracks": 0})
            rec["tracks"] += 1
        index["clips"] = list(by_source.values())
    return index


def not_done(clips: Sequence[ClipInput], old: dict | None) -> tuple[list[ClipInput], int]:
    """Clips not yet in the dataset `old`, and how many are; InputError if a new clip's tracks would take
    the file names of another clip's."""
    if not old:
        return list(clips), 0
    done = {Path(c["source"]).stem: c["source"] for c in old["clips"]}
    todo, kept = [], 0
    for c in clips:
        source = done.get(c.path.stem)
        if source is None:
            todo.append(c)
        elif source == str(c.path) or (Path(source).exists() and os.path.samefile(source, c.path)):
            kept += 1
        else:
            raise InputError(f"{c.path}: the dataset already has tracks named {c.path.stem}_t* from {source}")
    return todo, kept


def new_index(cfg: PrepareConfig, old: dict | None, skipped: list[str], sources: set[str]) -> dict:
    earlier_skips = [s for s in (old or {}).get("skipped", []) if s.split(": ", 1)[0] not in sources]
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "complete": False,
        "crop_size": cfg.size,
        "head_scale": HEAD_SCALE,
        "head_shift": HEAD_SHIFT,
        "detector": cfg.detector,
        "encoder": {"codec": CODEC, "crf": cfg.crf, "pix_fmt": cfg.pix_fmt, "preset": cfg.preset},
        "config": old["config"] if old and "config" in old else asdict(cfg),
        "skipped": earlier_skips + skipped,
        "clips": list(old["clips"]) if old else [],
        "tracks": list(old["tracks"]) if old else [],
    }


def write_index(out: Path, index: dict) -> None:
    """Replace `out/index.json` atomically; OutputError (and no temp file) if it cannot be written."""
    write_atomic(out / "index.json", json.dumps(index, indent=1))


def remove_unfinished(out: Path, clips: Sequence[ClipInput]) -> None:
    """Delete the temp files, and the tracks of `clips` (not in the index), that an interrupted export left."""
    tracks = out / "tracks"
    if not tracks.is_dir():
        return
    stems = {c.path.stem for c in clips}
    for f in tracks.iterdir():
        if TMP_TAG in f.name:
            f.unlink(missing_ok=True)
        elif f.suffix == ".mp4" and f.stem.rpartition("_t")[0] in stems:
            f.unlink(missing_ok=True)


def remove_empty_dataset(out: Path, created: bool) -> None:
    """Undo a new dataset in which nothing was finished: `out` as it was (removed if this run created it)."""
    (out / "index.json").unlink(missing_ok=True)
    for d in (out / "tracks", out) if created else (out / "tracks",):
        try:
            d.rmdir()
        except OSError:
            return
