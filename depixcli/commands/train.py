"""`depix train` (being written)."""

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def train_command() -> None:
    """(being written)"""
    raise click.ClickException("depix train is being written")
