"""`depix prepare` (being written)."""

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def prepare_command() -> None:
    """(being written)"""
    raise click.ClickException("depix prepare is being written")
