"""`python -m depixcli.commands.export_features SRC DST`: a perceptual network as a compact weights file
(`train.perceptual.export_features`), for `depix train --perceptual DST`."""

import click

from depixcli.commands.common import user_errors
from depixcli.train.perceptual import export_features


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("src")
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--taps", default=None, help="comma-separated feature indices (default: the network's DEFAULT_TAPS)")
@click.option("--fp32", is_flag=True, help="keep float32 (default: float16)")
def export_features_command(src: str, dst: str, taps: str | None, fp32: bool) -> None:
    """Export the perceptual network SRC (vgg16-stlpips, mobilenetv2 or a .pth path) to a compact DST file."""
    with user_errors():
        t = tuple(int(v) for v in taps.split(",")) if taps else None
        size = export_features(src, dst, t, half=not fp32)
    click.echo(f"{dst}: {size / 2**20:.2f} MiB")


if __name__ == "__main__":
    export_features_command()
