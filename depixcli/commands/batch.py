"""Many inputs for `depix run`, `pixelate` and `audit`: the shared options, the call of `depixcli.batch` and its
wording (a line per failed video, with the flag of the option it is about; the summary).

A command adds `@batch_options` and, once it has built its config, hands a folder, glob or CSV input to
`batch_command` (see `depixcli.batch` for planning, resume and the engines).
"""

import dataclasses
import functools
import os

import click

from depixcli.commands.common import flag

META = "depix.batch"  # click context meta key holding the batch options of the command being run
CLUSTER_ENV = "DASK_SCHEDULER_ADDRESS"  # = batch.run.CLUSTER_ENV (not imported here: --help stays instant)
CONNECT_TIMEOUT_S = 10.0  # = batch.engines.CONNECT_TIMEOUT_S


def batch_options(f):
    """Add --jobs, --cluster, --cluster-timeout, --results and --retry-failed to a command; they reach
    `batch_command` through the click context, so the command's own signature does not change."""

    @functools.wraps(f)
    def wrapper(*args, jobs, cluster, cluster_timeout, results, retry_failed, **kwargs):
        click.get_current_context().meta[META] = {"jobs": jobs, "cluster": cluster, "connect_timeout": cluster_timeout,
                                                  "manifest": results, "retry_failed": retry_failed}
        return f(*args, **kwargs)

    options = [
        click.option("--jobs", "-j", type=click.IntRange(min=1), default=1,
                     help="Many inputs: videos done at once by local worker processes (the CPU threads are "
                          "shared out among them)."),
        click.option("--cluster", default=None, metavar="ADDRESS",
                     help="Many inputs: run on the Dask cluster whose scheduler is at ADDRESS (e.g. "
                          f"tcp://10.0.0.5:8786; default ${CLUSTER_ENV}). Needs `pip install 'depix[cluster]'`, "
                          "depix on every worker and the same paths."),
        click.option("--cluster-timeout", type=click.FloatRange(min=0, min_open=True), default=CONNECT_TIMEOUT_S,
                     metavar="SECONDS", help="Many inputs: give up (exit 1) when the Dask scheduler cannot be "
                                             "reached within this time."),
        click.option("--results", type=click.Path(dir_okay=False), default=None,
                     help="Many inputs: the JSONL result manifest (one line per video) [default: "
                          "OUTPUT/depix-batch.jsonl]; a rerun skips the videos it lists as finished."),
        click.option("--retry-failed", is_flag=True,
                     help="Many inputs: also redo videos that an earlier run found unreadable."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def batch_requested(inputs) -> bool:
    """Whether `inputs` are many (a folder, a glob, a CSV, several files); --jobs / --cluster / --results
    on a single video are a usage error."""
    from depixcli.batch.plan import is_batch

    if is_batch(inputs):
        return True
    opts = click.get_current_context().meta.get(META, {})
    if opts.get("jobs", 1) > 1 or opts.get("cluster") or opts.get("manifest"):
        raise click.UsageError("--jobs, --cluster and --results apply to many inputs: a folder, a glob or a CSV")
    return False


def batch_command(task: str, inputs, output, config, *, originals=None, extras=None, quiet: bool = False,
                  skip_unreadable: bool = False) -> list[dict]:
    """Plan, run and report a batch; returns the records of every video (this run's and, for those
    skipped, the earlier run's). `extras`: {kind: folder} of further outputs (`batch.plan.plan_jobs`); a run
    config's `boxes` is the folder of the inputs' sidecars. Exit 1 (ClickException) while a video of the
    batch is failed (in this run, or unreadable in an earlier one and unchanged), except unreadable inputs
    with `skip_unreadable`."""
    from depixcli.batch.engines import ClusterUnreachable
    from depixcli.batch.plan import plan_jobs
    from depixcli.batch.run import BatchConfig, run_batch

    opts = click.get_current_context().meta.get(META, {})
    cfg = BatchConfig(jobs=opts.get("jobs", 1), cluster=opts.get("cluster"), manifest=opts.get("manifest"),
                      retry_failed=opts.get("retry_failed", False), quiet=quiet,
                      connect_timeout=opts.get("connect_timeout", CONNECT_TIMEOUT_S))
    boxes = getattr(config, "boxes", None)
    if boxes is not None and not os.path.isdir(boxes):
        raise click.BadParameter(f"{boxes}: with many inputs, a folder of `depix pixelate` sidecars "
                                 "<name>.json at the inputs' relative paths (as `pixelate --boxes-out FOLDER` "
                                 "writes them)", param_hint="--boxes")
    jobs = plan_jobs(task, inputs, output, originals=originals, extras=extras, boxes=boxes)
    sidecar = next((j.boxes for j in jobs if j.boxes is not None), None)
    if sidecar is not None:
        dataclasses.replace(config, boxes=sidecar)  # a CSV's `boxes` with --region: ConfigError before any work
    skipped: list[str] = []

    def report(rec: dict) -> None:
        if rec["status"] == "failed" and skip_unreadable and rec.get("error_kind") == "input":
            skipped.append(rec["error"])
        elif rec["status"] == "failed":
            click.echo(f"Failed: {failure(rec)}", err=True)
        elif not quiet:
            extra_text = f", {rec['verdict']}" if rec.get("verdict") else ""
            if rec.get("repaired_verdict"):
                extra_text += f" (repaired: {rec['repaired_verdict']})"
            click.echo(f"{rec['output']}: {rec['frames']} frames, {rec['tracks']} track(s), {rec['fps'] or 0:.1f} fps"
                       f"{extra_text}", err=True)

    try:
        result = run_batch(task, config, jobs, cfg, output_dir=output, on_record=report)
    except ClusterUnreachable as exc:
        raise click.ClickException(f"{exc} (--cluster-timeout sets the wait)") from None
    skipped[:0] = [r["error"] for r in result.previous
                   if r["status"] == "failed" and skip_unreadable and r.get("error_kind") == "input"]
    if not quiet:
        click.echo(format_summary(result), err=True)
    for reason in skipped:
        click.echo(f"Skipped: {reason}", err=True)
    records = result.previous + result.records
    bad = [r for r in records if r["status"] == "failed" and not (skip_unreadable and r.get("error_kind") == "input")]
    if bad:
        raise click.ClickException(f"{len(bad)} of {result.planned} videos failed (listed in {result.manifest})")
    return records


def failure(rec: dict) -> str:
    """A failed record's line: its input (unless the error names it), the flag of the option the error is about
    (`option`: `boxes` -> `--boxes`), the error."""
    where = "" if rec["input"] in rec["error"] else f"{rec['input']}: "
    option = f"{flag(rec['option'])} " if rec.get("option") else ""
    return f"{where}{option}{rec['error']}"


def format_summary(result) -> str:
    """A few lines of a `batch.run.BatchResult`: how many videos were done, skipped and failed, frames and time,
    where the records are."""
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
