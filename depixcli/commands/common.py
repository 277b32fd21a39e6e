"""Helpers shared by the command modules: error translation and common options."""

import contextlib
from collections.abc import Iterator

import click


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into a one-line `Error: ...` and exit code 1 (no traceback), and library
    warnings (`DepixWarning`) into one `Warning: ...` line each on stderr, as they happen.

    KeyboardInterrupt exits 130 with a short message; outputs are written atomically by the
    library, so an interrupted run leaves nothing half-written behind.
    """
    import warnings

    from depixcli.errors import DepixError, DepixWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DepixWarning):
            click.echo(f"Warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", DepixWarning)
        warnings.showwarning = show
        try:
            yield
        except DepixError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise SystemExit(130) from None


def parse_region(value: str | None) -> tuple[int, int, int, int] | None:
    """`x,y,w,h` -> tuple of ints (click callback helper)."""
    if value is None:
        return None
    try:
        x, y, w, h = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected x,y,w,h in pixels, got {value!r}") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise click.BadParameter(f"region must have x,y >= 0 and w,h > 0, got {value!r}")
    return x, y, w, h
