"""The one progress-bar factory: tqdm on stderr with units and ETA, silenced by `--quiet`."""

from __future__ import annotations

from collections.abc import Callable

from tqdm import tqdm


def progress_bar(total: int | None = None, desc: str | None = None, unit: str = "frame", quiet: bool = False,
                 leave: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr (width following the terminal); `quiet` disables it. Extra kwargs go to tqdm."""
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, leave=leave, dynamic_ncols=True, **kwargs)


def bar_factory(quiet: bool, unit: str = "frame", **kwargs) -> Callable[[str, int | None], tqdm]:
    """`make(desc, total)` -> a transient bar (left off the screen when done), for functions that open one
    bar per pass and take a factory so that callers (batch runs, tests) can swap it."""

    def make(desc: str, total: int | None) -> tqdm:
        return progress_bar(total, desc, unit, quiet, leave=False, **kwargs)

    return make
