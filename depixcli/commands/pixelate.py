"""`depix pixelate` (being written)."""

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def pixelate_command() -> None:
    """(being written)"""
    raise click.ClickException("depix pixelate is being written")
