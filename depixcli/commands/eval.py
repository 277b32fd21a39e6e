"""`depix eval` (being written)."""

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def eval_command() -> None:
    """(being written)"""
    raise click.ClickException("depix eval is being written")
