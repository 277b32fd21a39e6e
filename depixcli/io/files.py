"""The one way depix writes a file: a temporary file beside the target, renamed over it on success.

Policy (every output: videos, sidecars, JSON reports, weights):
- the temporary is `.<name>.depix-tmp-<random><suffix>` in the target's directory (same file system, so
  the rename is atomic; `TMP_TAG` lets batch runs recognise and clean up leftovers);
- on success it gets the usual file mode (0666 less the umask) and replaces the target (`os.replace`);
- on any exception (Ctrl-C too) it is deleted and the target is left as it was;
- an OS error becomes one `OutputError` line naming the target.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from depixcli.errors import OutputError

TMP_TAG = ".depix-tmp-"  # temporary output: .<name><TMP_TAG><random><suffix>, next to the target
FILE_MODE = 0o666  # mode of a finished output before the umask (mkstemp and safetensors make 0600)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def temp_beside(path: str | os.PathLike) -> str:
    """Create an empty temporary file beside `path` and return its name; OutputError when that is impossible."""
    path = Path(path)
    directory = path.absolute().parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_TAG}", suffix=path.suffix, dir=directory)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create a file in {directory} ({_reason(exc)})") from None
    os.close(fd)
    return tmp


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give the finished temporary `tmp` the usual file mode and rename it over `path`."""
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, FILE_MODE & ~umask)
        os.replace(tmp, path)
    except OSError as exc:
        discard(tmp)
        raise OutputError(f"{path}: cannot write ({_reason(exc)})") from None


def discard(tmp: str | os.PathLike | None) -> None:
    """Delete a temporary (error path); a missing one is fine."""
    if tmp is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside `path` to write; it replaces `path` when the block ends without an
    exception and is deleted otherwise. OS errors inside the block become OutputError."""
    tmp = temp_beside(path)
    try:
        yield tmp
    except OSError as exc:
        discard(tmp)
        raise OutputError(f"{path}: cannot write ({_reason(exc)})") from None
    except BaseException:
        discard(tmp)
        raise
    commit(tmp, path)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` (str: UTF-8) to `path` atomically; OutputError (one line, no temporary left) on failure."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data.encode() if isinstance(data, str) else data)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (reports name exactly what they measured)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
