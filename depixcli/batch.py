"""Many videos: `depix run`, `pixelate` and `audit` over a folder, a glob or a CSV, resumable.

Data flow:
  plan     inputs -> `Job`s: a folder (walked recursively) or a glob mirrors its tree under the output
           folder, a file keeps its name, a CSV (`input` or `file`, optional `output`, `original`, `boxes`)
           says so; further outputs (sidecars, sheets, logs, repaired videos) and run's input sidecars
           lie in their own folders at the same relative path
  resume   the result manifest (JSONL, `MANIFEST_NAME` in the output folder) -> the jobs still to do: a job
           is finished when its last record is `done` with the same config and input (size, mtime) and every
           output file it lists still has the recorded size and SHA-256; an input that failed with an
           InputError (corrupt, not a video) stays failed until it changes (or `retry_failed`)
  work     `batch_work.process_job` per video, calling the library entry point (`restore.run.run_video`,
           `pixelate.pixelate_video`, `audit.video.audit_video`): in this process (jobs = 1), in `jobs` local
           worker processes (the CPU threads shared out among them), or on a Dask cluster (`cluster`
           address, or $DASK_SCHEDULER_ADDRESS). Errors become `failed` records: one bad video never
           stops the batch. A worker that dies is replaced and its video redone (Dask reschedules it;
           locally the pool is rebuilt), a few times (`batch_work`).
  record   one JSON line per video as it finishes, appended and fsynced by this process alone; outputs
           are written atomically by the entry points, and temporary files a killed worker left beside
           an output are removed at the end, also when the batch is stopped (Ctrl-C, SIGTERM: local
           workers are terminated at once, see `batch_work.run_local`).

On a cluster every worker needs depix installed and the same paths (a shared file system).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from depixcli.batch_work import (
    CONNECT_TIMEOUT_S,
    config_key,
    connect_cluster,
    file_digest,
    input_fingerprints,
    run_cluster,
    run_here,
    run_local,
)
from depixcli.dataset.inputs import VIDEO_EXTENSIONS
from depixcli.errors import DepixError, InputError, OutputError
from depixcli.io.files import TMP_TAG
from depixcli.io.progress import progress_bar
from depixcli.pixelate import KEEP_EXTENSIONS

TASKS = ("run", "pixelate", "audit")
MANIFEST_NAME = "depix-batch.jsonl"  # result manifest, in the output folder unless given
CLUSTER_ENV = "DASK_SCHEDULER_ADDRESS"  # Dask's own variable for the scheduler address
GLOB_CHARS = "*?["
TEMP_TAGS = (TMP_TAG,)  # temporary names of every depix writer (io.files: the one atomic-write policy)


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


@dataclass(frozen=True)
class BatchConfig:
    jobs: int = 1  # local worker processes (1: in this process)
    cluster: str | None = None  # Dask scheduler address; None: $DASK_SCHEDULER_ADDRESS, else local
    connect_timeout: float = CONNECT_TIMEOUT_S  # s to reach the Dask scheduler before giving up
    manifest: str | None = None  # result manifest; None: <output>/MANIFEST_NAME
    retry_failed: bool = False  # redo inputs that failed as unreadable although unchanged
    quiet: bool = True  # no progress bar

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise DepixError(f"jobs must be >= 1, got {self.jobs}")
        if not self.connect_timeout > 0:
            raise DepixError(f"the cluster connect timeout must be > 0 s, got {self.connect_timeout}")


@dataclass
class BatchResult:
    planned: int  # videos in the batch
    records: list[dict] = field(default_factory=list)  # this run's, in the order they finished
    previous: list[dict] = field(default_factory=list)  # earlier runs' records of the videos skipped now
    wall_s: float = 0.0
    manifest: str = ""
    engine: str = ""

    @property
    def skipped(self) -> int:
        """Videos finished by an earlier run (verified), or unreadable there and unchanged since."""
        return len(self.previous)

    @property
    def done(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "done"]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]


# ------------------------------------------------------------------------------------------ plan
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
    import csv

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


# ------------------------------------------------------------------------------------------ resume
def read_manifest(path) -> dict[str, dict]:
    """The last record per output of a result manifest ({} when there is none). A line that does not
    parse (the end of a batch killed while writing it) is ignored."""
    records: dict[str, dict] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "output" in rec:
                    records[os.path.abspath(rec["output"])] = rec
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise InputError(f"{path}: cannot read the result manifest ({exc.strerror or exc})") from None
    return records


def is_finished(job: Job, record: dict | None, key: str, retry_failed: bool = False) -> bool:
    """Whether an earlier run's `record` finished `job` (outputs checked by size and SHA-256), or found
    its input unreadable and nothing changed since."""
    if record is None or record.get("config") != key or record.get("inputs") != input_fingerprints(job):
        return False
    if record["status"] == "failed":
        return record.get("error_kind") == "input" and not retry_failed
    if record["status"] != "done":
        return False
    for path, (size, digest) in record.get("files", {}).items():
        try:
            if file_digest(path) != [size, digest]:
                return False
        except OSError:
            return False
    return bool(record.get("files"))


def cluster_address(cfg: BatchConfig) -> str | None:
    return cfg.cluster or os.environ.get(CLUSTER_ENV) or None


def _sweep_temps(job: Job) -> None:
    """Remove temporary files a killed worker left beside the outputs of `job`."""
    for out in job.outputs:
        p = Path(out)
        if not p.parent.is_dir():
            continue
        for tmp in p.parent.glob(f".{glob.escape(p.name)}*"):
            if any(tag in tmp.name for tag in TEMP_TAGS):
                tmp.unlink(missing_ok=True)


def run_batch(task: str, config, jobs: list[Job], cfg: BatchConfig = BatchConfig(), output_dir=None,
              on_record=None) -> BatchResult:
    """Run `jobs` (from `plan_jobs`) not finished by an earlier run; append a record per video to the
    manifest and call `on_record(record)` as each finishes. `config` is the task's RunConfig,
    PixelateConfig or AuditConfig (progress bars are turned off in it)."""
    t0 = time.perf_counter()
    if hasattr(config, "quiet"):
        config = dataclasses.replace(config, quiet=True)
    manifest = cfg.manifest or os.path.join(os.fspath(output_dir), MANIFEST_NAME)
    key = config_key(task, config)
    earlier = read_manifest(manifest)
    todo, previous = [], []
    for job in jobs:
        rec = earlier.get(os.path.abspath(job.output))
        if is_finished(job, rec, key, cfg.retry_failed):
            previous.append(rec)
        else:
            todo.append(job)
    address = cluster_address(cfg)
    engine = (f"Dask cluster {address}" if address else f"{cfg.jobs} local processes" if cfg.jobs > 1
              else "this process")
    client = connect_cluster(address, cfg.connect_timeout) if todo and address else None
    result = BatchResult(len(jobs), previous=previous, manifest=manifest, engine=engine)
    bar = progress_bar(len(todo), f"{task} batch", unit="video", quiet=cfg.quiet or not todo, file=sys.stderr)
    log = None  # opened at the first record: a batch that cannot start leaves no file behind

    def record(rec: dict) -> None:
        nonlocal log
        try:
            if log is None:
                os.makedirs(os.path.dirname(os.path.abspath(manifest)), exist_ok=True)
                log = open(manifest, "a", encoding="utf-8")
            log.write(json.dumps(rec) + "\n")
            log.flush()
            os.fsync(log.fileno())
        except OSError as exc:
            raise OutputError(f"{manifest}: cannot write the result manifest ({exc.strerror or exc})") from None
        result.records.append(rec)
        if on_record is not None:
            with bar.external_write_mode(file=sys.stderr):
                on_record(rec)
        bar.update(1)

    finished = False
    try:
        if client is not None:
            run_cluster(task, config, todo, client, record)
        elif cfg.jobs > 1 and len(todo) > 1:
            run_local(task, config, todo, cfg.jobs, record)
        else:
            run_here(task, config, todo, record)
        finished = True
    finally:  # also when stopped (Ctrl-C, SIGTERM): each manifest line is a whole record
        bar.close()
        if log is not None:
            log.close()
        if finished or not address:  # local workers are gone; cluster workers may still be writing theirs
            for job in todo:
                _sweep_temps(job)
    result.wall_s = time.perf_counter() - t0
    return result


def format_summary(result: BatchResult) -> str:
    """A few lines: how many videos were done, skipped and failed, frames and time, where the records are."""
    done, failed = result.done, result.failed
    frames = sum(r["frames"] or 0 for r in done)
    work = sum(r["seconds"] or 0 for r in result.records)
    lines = [f"{result.planned} video(s): {len(done)} done, {len(failed)} failed, {result.skipped} skipped "
             f"(finished or unreadable in an earlier run); {result.engine}"]
    if result.records:
        lines.append(f"{frames} frames in {result.wall_s:.1f} s wall ({frames / result.wall_s:.2f} fps), "
                     f"{work:.1f} s of per-video work")
    lines.append(f"results: {result.manifest}")
    return "\n".join(lines)
