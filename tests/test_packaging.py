"""The package installs whole: every subpackage is listed, `py.typed` ships, and a wheel built from the tree, installed
into a fresh environment, runs `depix run` offline on a pixelated clip with the default model and no flags."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from depixcli.geometry.mosaic import apply_mosaic, grid_from_blocks
from depixcli.io.synthetic import synthetic_face_frames, write_test_clip
from depixcli.io.video import probe, read_frames

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = "depixcli.model.shipped"  # the weights/ folder, mapped into the package (pyproject package-dir)


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_is_listed_and_the_weights_folder_is_package_data():
    cfg = setuptools_config()
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "depixcli").rglob("__init__.py")}
    assert set(cfg["packages"]) == found | {SHIPPED}
    assert cfg["package-dir"] == {SHIPPED: "weights"}
    assert {"depix-default.safetensors", "README.md"} <= set(cfg["package-data"][SHIPPED])
    assert "py.typed" in cfg["package-data"]["depixcli"] and (ROOT / "depixcli" / "py.typed").is_file()


@pytest.mark.slow
def test_a_built_wheel_runs_depix_run_offline_with_the_default_model(tmp_path):
    src = tmp_path / "src"  # a clean copy: the build writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "scratch"))
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(dist), str(src)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("depix-*.whl")

    # A fresh environment: the wheel installed with --no-deps; its dependencies (torch, av, ...) are this
    # environment's, reached through a .pth line (nothing is downloaded, and this checkout is not on the path).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]]) if Path(p).is_dir()]
    Path(purelib, "_depix_test_deps.pth").write_text("\n".join(deps) + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr

    frames = list(synthetic_face_frames(8, (160, 120)))
    grid = grid_from_blocks((52.0, 20.0, 108.0, 96.0), 8)  # an 8 x 8 mosaic over the synthetic face
    clip = tmp_path / "pixelated.mp4"
    write_test_clip(clip, [apply_mosaic(f, grid) for f in frames])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DEPIX_WEIGHTS")}
    where = subprocess.run([str(py), "-c", "import depixcli.model.weights as w; print(w.default_weights_path())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(Path(purelib))  # the package data, not this checkout
    out = tmp_path / "restored.mp4"
    run = subprocess.run([str(venv / "bin" / "depix"), "run", str(clip), "-o", str(out), "--device", "cpu", "-q"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert probe(out).frames == len(frames)
    before = next(read_frames(clip)).image.astype(int)
    after = next(read_frames(out)).image.astype(int)
    x0, y0, x1, y1 = (int(v) for v in grid.rect)
    inside = abs(after[y0:y1, x0:x1] - before[y0:y1, x0:x1]).mean()  # the mosaic, reconstructed
    outside = abs(after[:, :40] - before[:, :40]).mean()  # background: only the re-encoding's noise
    assert inside > 2.0 * outside, (inside, outside)
