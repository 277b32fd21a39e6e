"""`depix audit ANONYMISED --original ORIGINAL`: does an anonymised video still show who is in it?"""

import click

from depixcli.commands.common import user_errors

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}
DEFAULT_FRAMES = 60  # = audit.DEFAULT_FRAMES (not imported here: --help stays instant)
LEAK_EXIT = 3  # exit status with --fail-on-leak when the verdict is leaks (1: errors, 2: usage errors)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("anonymised", metavar="ANONYMISED", type=click.Path(dir_okay=False))
@click.option("--original", required=True, type=click.Path(dir_okay=False),
              help="The video before anonymisation (same size and frame count).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the full report as JSON here.")
@click.option("--sheet", "sheet_path", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG contact sheet here: per track, original | anonymised | reconstruction.")
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
@click.option("--fail-on-leak", is_flag=True,
              help=f"Exit with status {LEAK_EXIT} when the verdict is leaks (for scripts); without it the exit "
                   "status is 0 whatever the verdict.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def audit_command(ctx, anonymised, original, json_path, sheet_path, gallery, weights, device, frames, detector,
                  fail_on_leak, quiet):
    """Measure whether the faces of ANONYMISED can still be recognised, against ORIGINAL.

    Per face track of the original: SFace identity cosine of (a) the anonymised face, (b) a smoothed
    copy, (c) depix's own reconstruction, the share of frames above SFace's same-person threshold and
    the re-identification rank; a model-free analysis of the mosaic; and a verdict, holds or leaks.
    Exit status 0 whatever the verdict (3 with --fail-on-leak when it leaks); errors (videos that
    differ, no face) exit 1, bad options 2.

    \b
      depix audit pixelated.mp4 --original clip.mp4 --sheet audit.png
    """
    with user_errors():
        from depixcli.audit import AuditConfig, audit_video, check_outputs, format_table, write_json, write_sheet

        cfg = AuditConfig(weights=weights, device=device, frames=frames, gallery=gallery, detector=detector,
                          quiet=quiet)
        check_outputs([p for p in (json_path, sheet_path) if p], [anonymised, original])
        report = audit_video(anonymised, original, cfg)
        if json_path:
            write_json(report, json_path)
        if sheet_path:
            write_sheet(report, sheet_path)
    click.echo(format_table(report))
    if fail_on_leak and report.verdict == "leaks":
        ctx.exit(LEAK_EXIT)
