"""`depix audit ANONYMISED --original ORIGINAL`: does an anonymised video still show who is in it?"""

import click

from depixcli.commands.batch import batch_command, batch_options, batch_requested
from depixcli.commands.common import user_errors

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}
DEFAULT_FRAMES = 60  # = audit.DEFAULT_FRAMES (not imported here: --help stays instant)
LEAK_EXIT = 3  # exit status with --fail-on-leak when the verdict is leaks (1: errors, 2: usage errors)


@click.command(context_settings=CONTEXT_SETTINGS)
@batch_options
@click.argument("anonymised", metavar="ANONYMISED", type=click.Path())
@click.option("--original", type=click.Path(), default=None,
              help="The video before anonymisation (same size and frame count). Required, except with a CSV of "
                   "input,original[,output]; for a folder or glob of ANONYMISED videos, the folder of originals "
                   "(same relative paths).")
@click.option("--json", "json_path", type=click.Path(), default=None,
              help="Write the full report as JSON here; for many inputs (a folder, a quoted glob, a CSV), the "
                   "folder of reports (required), mirroring the input tree.")
@click.option("--sheet", "sheet_path", type=click.Path(), default=None,
              help="Write a PNG contact sheet here: per track, original | anonymised | reconstruction (for many "
                   "inputs, a folder).")
@click.option("--gallery", type=click.Path(file_okay=False), default=None,
              help="Directory of face photos of other people (or suspects) added to the re-identification "
                   "gallery, next to the video's own face tracks.")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Model for the reconstruction attack. Default: the one `depix run` uses "
                   "($DEPIX_WEIGHTS, else weights/depix-default.safetensors).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              help="Where the reconstruction runs.")
@click.option("--frames", type=click.IntRange(min=0), default=DEFAULT_FRAMES,
              help="Frames scored per face track, evenly spread (0: every frame).")
@click.option("--detector", type=click.Choice(["yunet", "centerface"]), default="yunet",
              help="Face detector run on the original (its landmarks align every face).")
@click.option("--csv", "csv_path", type=click.Path(), default=None,
              help="Write a redaction log here: one CSV line per track and exposed range (track, start, end, "
                   "frames, seconds, what was found, verdict, reason); for many inputs, a folder of <name>.csv.")
@click.option("--repair", "repair_path", type=click.Path(), default=None,
              help="Write a copy of ANONYMISED with every exposed range masked (depix's secure mosaic over the "
                   "original's face tracks; audio, timestamps and all other pixels kept), audit it again and "
                   "print its verdict (for many inputs, a folder of repaired videos mirroring the input tree; "
                   "the manifest records each repaired verdict).")
@click.option("--start", type=click.FloatRange(min=0), default=0.0, help="Audit from this time on (seconds).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Audit this many seconds from --start (default: to the end).")
@click.option("--recommend/--no-recommend", default=True,
              help="Try depix pixelate --blocks 16, 12, 8, 6, 4 on each face and recommend the finest that holds.")
@click.option("--no-dlib", is_flag=True,
              help="Skip dlib's descriptor, the identity judge no depix model trains on, even when dlib is installed "
                   "(about 0.08 s of CPU a face; SFace still judges).")
@click.option("--nothing-else-identifies", "confirmed", is_flag=True,
              help="Confirm that nothing but the faces identifies the people (voice, clothing, name tags, "
                   "places...): a video whose faces hold is then reported as anonymised, not pseudonymised.")
@click.option("--fail-on-leak", is_flag=True,
              help=f"Exit with status {LEAK_EXIT} when the verdict is leaks (for scripts); without it the exit "
                   "status is 0 whatever the verdict.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def audit_command(ctx, anonymised, original, json_path, sheet_path, gallery, weights, device, frames, detector,
                  csv_path, repair_path, start, duration, recommend, no_dlib, confirmed, fail_on_leak, quiet):
    """Measure whether the faces of ANONYMISED can still be recognised, against ORIGINAL.

    Per face track of the original: the leak timeline (frame ranges where the anonymised face is
    uncovered, partly covered or still recognisable as it is), SFace identity cosine of the anonymised
    face, a smoothed copy and depix's own reconstruction, the re-identification rank, the same by dlib's
    descriptor when dlib is installed (the judge no depix model trains on), a model-free
    analysis of the mosaic, a recommended strength, and a verdict: holds, leaks, or not judged (the
    original's face is too small, dark, blurred or unsure to judge). Exit status 0 whatever the verdict
    (3 with --fail-on-leak when it leaks); errors (videos that differ, no face) exit 1, bad options 2.

    \b
      depix audit pixelated.mp4 --original clip.mp4 --sheet audit.png --csv log.csv
      depix audit pixelated.mp4 --original clip.mp4 --repair fixed.mp4 --start 60 --duration 30
    """
    with user_errors():
        from depixcli.audit.report import check_outputs, write_csv, write_json, write_sheet
        from depixcli.audit.verdict import AuditConfig
        from depixcli.audit.video import audit_video, repair
        from depixcli.commands.audit_text import format_report

        cfg = AuditConfig(weights=weights, device=device, frames=frames, gallery=gallery, detector=detector,
                          recommend=recommend, start=start, duration=duration, confirmed=confirmed, quiet=quiet,
                          dlib=not no_dlib)
        if batch_requested([anonymised]):
            if json_path is None:
                raise click.UsageError("many inputs need --json FOLDER for their reports")
            extras = {"sheet": sheet_path, "csv": csv_path, "repair": repair_path}
            records = batch_command("audit", [anonymised], json_path, cfg, originals=original, extras=extras,
                                    quiet=quiet)
            if fail_on_leak and any(r.get("verdict") == "leaks" for r in records):
                ctx.exit(LEAK_EXIT)
            return
        if original is None:
            raise click.UsageError("Missing option '--original'.")
        outputs = [p for p in (json_path, sheet_path, csv_path, repair_path) if p]
        check_outputs(outputs, [anonymised, original])
        report = audit_video(anonymised, original, cfg)
        if no_dlib:
            report.dlib = "dlib not used (--no-dlib)"
        if repair_path:
            repair(report, repair_path, cfg, quiet=quiet)
        if json_path:
            write_json(report, json_path)
        if sheet_path:
            write_sheet(report, sheet_path)
        if csv_path:
            write_csv(report, csv_path)
    click.echo(format_report(report))
    if fail_on_leak and report.verdict == "leaks":
        ctx.exit(LEAK_EXIT)
