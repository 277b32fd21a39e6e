"""`depix prepare INPUTS... -o DIR`: export square head-crop tracks of face videos as training data."""

import click

from depixcli.commands.common import DETECTOR_NAMES, PRESETS, user_errors

# defaults below = dataset.PrepareConfig


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Dataset directory to write (index.json + tracks/*.mp4): new or empty, unless --add.")
@click.option("--add", is_flag=True,
              help="Add to the dataset already in the output directory: clips already in it are kept, so "
                   "rerunning an interrupted command with --add finishes it.")
@click.option("--val-fraction", default=0.1, type=click.FloatRange(0.0, 1.0),
              help="Share of identities held out as the 'val' split, for clips that have no split column "
                   "(chosen by a hash of the identity; at least one when there are two or more).")
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
@click.option("--preset", default="slow", type=click.Choice(PRESETS), help="x264 speed/size trade-off.")
@click.option("-j", "--workers", default=0, type=click.IntRange(0), help="Parallel processes (0: one per CPU core).")
@click.option("--skip-unreadable", is_flag=True,
              help="Leave out inputs that cannot be read (truncated, not a video) instead of stopping; "
                   "they are listed on stderr and in index.json.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def prepare_command(inputs, output, add, val_fraction, size, detector, threshold, detect_every, detect_size,
                    min_track, crf, pix_fmt, preset, workers, skip_unreadable, quiet):
    """Export head-crop face tracks of INPUTS (videos, directories, or a CSV) into a crop dataset
    directory for `depix train` / `depix eval`.

    \b
    CSV columns: file[,identity,split]
      file      video path (relative to the CSV's directory)
      identity  the person (default: the file's stem); all of a person's clips share one split
      split     train or val (`depix train` trains on train and validates on val; `depix eval`
                scores val). Clips without one: --val-fraction of the identities go to val.

    An interrupted run keeps the clips it finished (listed in index.json); rerun it with --add.
    """
    with user_errors():
        from depixcli.dataset.config import PrepareConfig
        from depixcli.dataset.export import prepare
        from depixcli.dataset.inputs import collect_inputs

        clips = collect_inputs(inputs)
        cfg = PrepareConfig(size=size, detector=detector, threshold=threshold, detect_every=detect_every,
                            max_side=detect_size, min_track=min_track, crf=crf,
                            pix_fmt=pix_fmt, preset=preset, workers=workers, val_fraction=val_fraction)
        s = prepare(clips, output, cfg, quiet=quiet, skip_unreadable=skip_unreadable, add=add)
        for reason in s.skipped:
            click.echo(f"Skipped: {reason}", err=True)
        if not quiet:
            kept = f" ({s.kept} already in the dataset)" if s.kept else ""
            click.echo(f"{s.clips} clips{kept} -> {s.tracks} tracks, {s.frames} crops, "
                       f"{s.bytes / 2**20:.1f} MiB; index: {s.index}", err=True)
            click.echo("splits: " + "; ".join(f"{sp} {n_id} {'identity' if n_id == 1 else 'identities'}, "
                                              f"{n_tr} tracks" for sp, n_id, n_tr in s.splits), err=True)
