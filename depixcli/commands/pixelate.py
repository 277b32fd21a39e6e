"""`depix pixelate IN... -o OUT`: mosaic every tracked face (see depixcli.pixelate)."""

import click

from depixcli.commands.batch import batch_command, batch_options, batch_requested
from depixcli.commands.common import DETECTOR_NAMES, PRESETS, make_window, user_errors, window_options


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@batch_options
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Output video; with several inputs, a folder, a quoted glob or a CSV (input[,output]), an output "
                   "folder (created if missing) mirroring the input tree.")
@click.option("--blocks", type=click.IntRange(1), default=None,
              help="N x N blocks over each face box, anchored to the face (the paper's 16 / 8, the OpenCV "
                   "recipe). Default 16 unless --block-size is given.")
@click.option("--block-size", type=click.FloatRange(1.0), default=None,
              help="Blocks of PX x PX pixels anchored to the image origin, as ffmpeg's pixelize and OBS do.")
@click.option("--value", "mode", type=click.Choice(["mean", "center"]), default="mean",
              help="Block colour: mean of its pixels, or the pixel at its centre.")
@click.option("--secure", is_flag=True,
              help="A mosaic that depix's own audit cannot recover: 6 x 6 blocks over 1.6 x the face box, "
                   "block values noised (+-32 levels), quantised (steps of 32) and held for 0.5 s (replaces "
                   "--blocks, --block-size, --value and --scale; see `depix audit`).")
@click.option("--scale", type=click.FloatRange(0.5, 4.0), default=1.3,
              help="Mosaic box size relative to the detector's face box (about its centre).")
@click.option("--detector", type=click.Choice(DETECTOR_NAMES), default="yunet", help="Face detector.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Detector score threshold (default: the detector's own).")
@click.option("--detect-size", type=click.IntRange(64), default=640,
              help="Long side of the downscaled copy the detector sees, px.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, help="Encoder quality (lower: better, larger).")
@click.option("--preset", type=click.Choice(PRESETS), default="medium", help="x264/x265 speed/size trade-off.")
@click.option("--codec", default="libx264", help="Video encoder: libx264, libx265, libvpx-vp9 or mpeg4.")
@click.option("--boxes-out", type=click.Path(path_type=str), default=None,
              help="JSON sidecar with, per frame and face track, the box and the mosaic grid used "
                   "(a directory of <name>.json with several inputs).")
@click.option("--skip-unreadable", is_flag=True,
              help="Inputs that cannot be read (truncated, not a video) do not fail the command: they are "
                   "listed on stderr at the end (many inputs never stop at a bad one; without this flag they "
                   "exit 1 at the end).")
@click.option("--pad", "pad_s", type=click.FloatRange(0.0), default=0.2,
              help="Fail-secure: each face's mask starts this many seconds before its track and ends this long "
                   "after it (frames the detector missed as the face came and went); 0: off.")
@click.option("--bridge", "bridge_s", type=click.FloatRange(0.0), default=1.0,
              help="Fail-secure: mask gaps up to this many seconds between a face track's end and a nearby "
                   "track's start (the same face lost by the detector); 0: off.")
@window_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary.")
def pixelate_command(inputs, output, blocks, block_size, secure, mode, scale, detector, threshold, detect_size, crf,
                     preset, codec, boxes_out, skip_unreadable, pad_s, bridge_s, start, duration,
                     max_frames, quiet):
    """Pixelate every face in INPUTS (video files or directories of videos).

    Two passes: detect and track faces over the whole video, then decode again, mosaic each tracked
    face and encode, keeping frame rate, timestamps and audio. A video without faces is re-encoded
    unchanged.
    """
    if blocks is not None and block_size is not None:
        raise click.BadParameter("give --blocks or --block-size, not both", param_hint="'--block-size'")
    if secure and (blocks is not None or block_size is not None):
        raise click.BadParameter("--secure sets its own grid; drop --blocks / --block-size", param_hint="'--secure'")
    window = make_window(start, duration, max_frames)
    with user_errors():
        from depixcli.pixelate import DEFAULT_BLOCKS, PixelateConfig, pixelate_many
        from depixcli.secure import SecureMosaic

        cfg = PixelateConfig(blocks=None if block_size is not None or secure else (blocks or DEFAULT_BLOCKS),
                             block_size=block_size, mode=mode, scale=scale, detector=detector, threshold=threshold,
                             max_side=detect_size, codec=codec, crf=crf, preset=preset,
                             secure=SecureMosaic() if secure else None, pad_s=pad_s, bridge_s=bridge_s,
                             window=window)

        def report(s):
            for note in s.notes:
                click.echo(note, err=True)
            if not quiet:
                tracks = f"{s.tracks} face track" + ("" if s.tracks == 1 else "s")
                click.echo(f"{s.output}: {s.frames} frames, {tracks} in {s.face_frames} frames, "
                           f"{s.fps:.1f} fps" + (f"; boxes: {s.sidecar}" if s.sidecar else ""), err=True)

        if batch_requested(inputs):
            batch_command("pixelate", inputs, output, cfg, extras={"boxes": boxes_out}, quiet=quiet,
                          skip_unreadable=skip_unreadable)
            return
        skipped: list[str] = []
        pixelate_many(inputs, output, cfg, boxes_out, quiet=quiet, on_done=report,
                      on_skip=skipped.append if skip_unreadable else None)
        for reason in skipped:
            click.echo(f"Skipped: {reason}", err=True)
