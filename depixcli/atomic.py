"""Atomic file writes: a temporary file beside the target, renamed over it; nothing is left on failure."""

from __future__ import annotations

import os
from pathlib import Path

from depixcli.errors import OutputError


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through `.<name>.tmp`; OutputError (one line, no temporary left) on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
