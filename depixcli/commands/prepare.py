"""`depix prepare INPUTS... -o DIR`: export square head-crop tracks of face videos as training data."""

import click

from depixcli.commands.common import user_errors

DETECTOR_NAMES = ("yunet", "centerface", "sfd")  # = detect.DETECTORS; defaults below = dataset.PrepareConfig


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Dataset directory to write (index.json + tracks/*.mp4); created if missing.")
@click.option("--size", default=128, type=click.IntRange(16, 1024), help="Side of the square head crops, px.")
@click.option("--detector", default="yunet", type=click.Choice(DETECTOR_NAMES), help="Face detector.")
@click.option("--threshold", default=None, type=click.FloatRange(0.0, 1.0),
              help="Detector score threshold (default: the detector's own).")
@click.option("--detect-every", default=2, type=click.IntRange(1),
              help="Run the detector on every N-th frame; the tracker interpolates the frames between.")
@click.option("--detect-size", default=320, type=click.IntRange(64),
              help="Long side of the downscaled copy the detector sees, px.")
@click.option("--min-track", default=8, type=click.IntRange(1), help="Drop face tracks shorter than this, frames.")
@click.option("--crf", default=12, type=click.IntRange(0, 51), help="x264 quality of the track videos (lower: better).")
@click.option("--pix-fmt", default="yuv444p", type=click.Choice(["yuv444p", "yuv420p"]),
              help="Chroma sampling of the track videos.")
@click.option("--preset", default="slow", type=click.Choice(
    ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]),
    help="x264 speed/size trade-off.")
@click.option("-j", "--workers", default=0, type=click.IntRange(0), help="Parallel processes (0: one per CPU core).")
@click.option("--skip-unreadable", is_flag=True,
              help="Leave out inputs that cannot be read (truncated, not a video) instead of stopping; "
                   "they are listed on stderr and in index.json.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def prepare_command(inputs, output, size, detector, threshold, detect_every, detect_size, min_track, crf, pix_fmt,
                    preset, workers, skip_unreadable, quiet):
    """Export head-crop face tracks of INPUTS (videos, directories, or a CSV with columns
    file[,identity,split]) into a crop dataset directory for `depix train` / `depix eval`."""
    with user_errors():
        from depixcli.dataset import PrepareConfig, collect_inputs, prepare

        clips = collect_inputs(inputs)
        cfg = PrepareConfig(size=size, detector=detector, threshold=threshold, detect_every=detect_every,
                            max_side=detect_size, min_track=min_track, crf=crf,
                            pix_fmt=pix_fmt, preset=preset, workers=workers)
        s = prepare(clips, output, cfg, quiet=quiet, skip_unreadable=skip_unreadable)
        for reason in s.skipped:
            click.echo(f"Skipped: {reason}", err=True)
        if not quiet:
            click.echo(f"{s.clips} clips -> {s.tracks} tracks, {s.frames} crops, "
                       f"{s.bytes / 2**20:.1f} MiB; index: {s.index}", err=True)
