"""Plan a batch: its inputs (folders walked recursively, globs, CSV lists, files) -> `Job`s, every output named.

A folder or a glob mirrors its tree under the output folder, a file keeps its name, a CSV (`input` or `file`,
optional `output`, `original`, `boxes`) says so; further outputs (sidecars, sheets, logs, repaired videos) and
run's input sidecars lie in their own folders at the same relative path. Nothing is read but names.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from depixcli.dataset.inputs import VIDEO_EXTENSIONS
from depixcli.errors import DepixError, InputError, OutputError
from depixcli.pixelate import KEEP_EXTENSIONS

TASKS = ("run", "pixelate", "audit")
GLOB_CHARS = "*?["
EXTRA_SUFFIX = {"boxes": ".json", "sheet": ".png", "csv": ".csv", "repair": None}  # None: a video (see _video_rel)
BOXES_SUFFIX = ".json"  # run: the sidecar of IN/x/clip.mp4 is BOXES/x/clip.json (as `pixelate --boxes-out` names it)


@dataclass(frozen=True)
class Job:
    input: str
    output: str  # the result: video (run, pixelate) or JSON report (audit)
    original: str | None = None  # audit: the video before anonymisation
    boxes: str | None = None  # run: the `depix pixelate` sidecar of the input
    extras: tuple[tuple[str, str], ...] = ()  # (kind, path) of further outputs, kinds of EXTRA_SUFFIX: pixelate's
    # boxes sidecar; audit's contact sheet, redaction log and repaired video

    def extra(self, kind: str) -> str | None:
        """The path of the further output `kind`, or None."""
        return dict(self.extras).get(kind)

    @property
    def sources(self) -> tuple[str, ...]:
        """The files the job reads."""
        return tuple(p for p in (self.input, self.original, self.boxes) if p is not None)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The files the job writes."""
        return (self.output, *(p for _, p in self.extras))


class Item(NamedTuple):
    """One input of a batch, before its outputs are named (`expand_inputs`)."""
    src: Path
    rel: str  # output path relative to the output folder (or absolute, from a CSV)
    original: Path | None = None  # from a CSV's `original` column
    boxes: Path | None = None  # from a CSV's `boxes` column


def is_batch(inputs) -> bool:
    """Several inputs, a folder, a CSV list or a glob pattern (rather than one video file)."""
    if len(inputs) != 1:
        return True
    p = os.fspath(inputs[0])
    return os.path.isdir(p) or p.lower().endswith(".csv") or (_is_pattern(p) and not os.path.exists(p))


def _is_pattern(p: str) -> bool:
    return any(c in p for c in GLOB_CHARS)


def _videos_under(root: Path) -> list[Path]:
    """Video files below `root`, recursively, sorted; hidden files and folders (temporaries) left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [Path(dirpath) / f for f in sorted(filenames)
                if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTENSIONS]
    return out


def _read_manifest_csv(path: Path) -> list[Item]:
    """CSV rows (`input` or `file`, optional `output`, `original`, `boxes`; paths relative to the CSV) -> Items."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read CSV ({exc})") from None
    column = "input" if rows and "input" in rows[0] else "file"
    if not rows or column not in rows[0]:
        raise InputError(f"{path}: CSV needs a header with an 'input' (or 'file') column")
    out = []
    for n, row in enumerate(rows, start=2):
        if not row.get(column):
            raise InputError(f"{path}:{n}: empty '{column}'")
        src = path.parent / row[column]
        original = path.parent / row["original"] if row.get("original") else None
        boxes = path.parent / row["boxes"] if row.get("boxes") else None
        out.append(Item(src, row.get("output") or src.name, original, boxes))
    return out


def _outside(root: Path, out_dir: Path) -> None:
    root, out_dir = root.resolve(), out_dir.resolve()
    if out_dir == root or root in out_dir.parents:
        raise OutputError(f"{out_dir}: the output folder lies inside the input folder {root}; choose another")


def expand_inputs(inputs, output_dirs) -> list[Item]:
    """Each input -> an `Item`: the video and its output path relative to the output folder.

    A folder's videos and a glob's matches keep their path below the folder (the glob's fixed part); a
    file keeps its name. Raises InputError for a folder without videos or a glob without matches,
    OutputError when one of `output_dirs` lies inside an input folder."""
    out_dirs = [Path(d) for d in ([output_dirs] if isinstance(output_dirs, (str, os.PathLike)) else output_dirs)]
    items: list[Item] = []
    for raw in inputs:
        raw = os.fspath(raw)
        p = Path(raw)
        if p.is_dir():
            for d in out_dirs:
                _outside(p, d)
            found = _videos_under(p)
            if not found:
                raise InputError(f"{p}: folder holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            items += [Item(f, str(f.relative_to(p))) for f in found]
        elif raw.lower().endswith(".csv") and p.is_file():
            items += _read_manifest_csv(p)
        elif _is_pattern(raw) and not p.exists():
            parts = p.parts
            fixed = next(i for i, part in enumerate(parts) if _is_pattern(part))
            root = Path(*parts[:fixed]) if fixed else Path(".")
            for d in out_dirs:
                _outside(root, d)
            found = [Path(f) for f in sorted(glob.glob(raw, recursive=True))
                     if os.path.isfile(f) and Path(f).suffix.lower() in VIDEO_EXTENSIONS]
            if not found:
                raise InputError(f"{raw}: no video file matches")
            items += [Item(f, str(f.relative_to(root))) for f in found]
        else:
            items.append(Item(p, p.name))  # a missing file becomes a failed record, not a stop
    return items


def plan_jobs(task: str, inputs, output_dir, originals=None, extras=None, boxes=None) -> list[Job]:
    """The jobs of a batch: outputs under `output_dir` (mirroring the inputs, see `expand_inputs`).

    run / pixelate: videos keep their container when it takes H.264 (`pixelate.KEEP_EXTENSIONS`), others
    become `.mp4`; audit: `<name>.json` reports. `originals` (audit): the folder holding the original of
    each input at the same relative path (any video extension). `extras`: {kind: folder} of further
    outputs at the same relative path (kinds and suffixes: EXTRA_SUFFIX): pixelate's `boxes` sidecars,
    audit's `sheet`, `csv` and `repair`. `boxes` (run): the folder of the inputs' sidecars at the same
    relative path with BOXES_SUFFIX (a CSV's `boxes` column overrides it). Raises InputError when two
    inputs would write the same output, OutputError when an output folder lies inside an input folder
    or an output would overwrite an input."""
    if task not in TASKS:
        raise DepixError(f"unknown batch task {task!r}; one of {', '.join(TASKS)}")
    out_dir = Path(output_dir)
    extra_dirs = {k: Path(v) for k, v in (extras or {}).items() if v is not None}
    unknown = set(extra_dirs) - set(EXTRA_SUFFIX)
    if unknown:
        raise DepixError(f"unknown batch outputs {sorted(unknown)}; known: {', '.join(EXTRA_SUFFIX)}")
    for d in (out_dir, *extra_dirs.values()):
        if d.exists() and not d.is_dir():
            raise OutputError(f"{d}: many inputs need an output folder, and this is a file")
    jobs, seen = [], {}
    videos_out = [out_dir, *(d for k, d in extra_dirs.items() if EXTRA_SUFFIX[k] is None)]  # never walked as inputs
    for item in expand_inputs(inputs, videos_out):
        rel = Path(item.rel)
        rel_path = rel.with_suffix(".json") if task == "audit" else _video_rel(rel)
        original = item.original
        if original is None and originals is not None:
            original = _original_for(Path(originals), rel)
        sidecar = item.boxes if task == "run" else None  # a CSV's `boxes` column is run's input
        if sidecar is None and boxes is not None:
            sidecar = Path(boxes) / rel.with_suffix(BOXES_SUFFIX)
        outs = [("output", out_dir / rel_path)]
        outs += [(k, d / (rel_path.with_suffix(EXTRA_SUFFIX[k]) if EXTRA_SUFFIX[k] else _video_rel(rel)))
                 for k, d in extra_dirs.items()]
        for _, out in outs:
            key = os.path.normpath(os.path.abspath(out))
            if key in seen:
                raise InputError(f"{seen[key]} and {item.src} would both write {out}")
            seen[key] = item.src
        jobs.append(Job(_abs(item.src), _abs(outs[0][1]), _abs(original), _abs(sidecar),
                        tuple((k, _abs(p)) for k, p in outs[1:])))
    sources = {os.path.normpath(p) for j in jobs for p in j.sources}
    for j in jobs:
        for out in j.outputs:
            if os.path.normpath(out) in sources:
                raise OutputError(f"{out}: would overwrite an input of the batch; choose other output folders")
    return jobs


def _abs(p) -> str | None:
    return os.path.abspath(p) if p is not None else None


def _video_rel(rel: Path) -> Path:
    """The relative path of an output video: the input's container when it takes H.264, else `.mp4`."""
    return rel if rel.suffix.lower() in KEEP_EXTENSIONS else rel.with_suffix(".mp4")


def _original_for(originals: Path, rel: Path) -> Path:
    """The original of an anonymised video at `rel`: the same relative path, else the same name with
    another video extension (an anonymised .mp4 of a .mov original)."""
    same = originals / rel
    if same.is_file():
        return same
    for ext in VIDEO_EXTENSIONS:
        other = same.with_suffix(ext)
        if other.is_file():
            return other
    return same  # missing: the job fails with the audit's own error
