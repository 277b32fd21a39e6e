"""`depix run` (being written)."""

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def run_command() -> None:
    """(being written)"""
    raise click.ClickException("depix run is being written")
