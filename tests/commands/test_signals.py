"""SIGTERM (kill, docker stop, systemd, CI timeouts) and SIGHUP (a closed terminal) stop every command as
Ctrl-C does: temporaries removed, one line on stderr, exit 128 + signal. Real signals to real processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from depixcli.io.files import TMP_TAG
from depixcli.io.synthetic import write_test_clip
from tests.dataset.test_dataset import write_face_clip
from tests.test_pixelate import _frames

WAIT_S = 180  # s, longest wait for a command to reach the stage where it is stopped (a busy 2-core machine)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("sig") / "face.mp4"
    write_test_clip(path, _frames(n=120), fps=25, audio=True)
    return path


def hidden(directory):
    return sorted(str(p) for p in Path(directory).rglob(".*"))


def stop_when(cmd, ready, sig, group=False):
    """Start `depix CMD`, send `sig` once `ready()` is true (to the process, or its whole group);
    -> (exit status, stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "depixcli", *map(str, cmd)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while p.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.01)
        assert p.poll() is None, "the command ended before it could be stopped: " + p.stderr.read()
        (os.killpg if group else os.kill)(p.pid, sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, err


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_run_stopped_while_writing_leaves_nothing(clip, tiny_weights, tmp_path, sig, status):
    out = tmp_path / "out.mp4"
    rc, err = stop_when(["run", clip, "-o", out, "-w", tiny_weights, "--region", "40,40,150,160",
                         "--preset", "veryslow", "-q"], lambda: hidden(tmp_path), sig)
    assert rc == status and err.strip() == f"Interrupted ({sig.name}).", err
    assert hidden(tmp_path) == [] and not out.exists()


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143)])
def test_pixelate_stopped_while_writing_leaves_nothing(clip, tmp_path, sig, status):
    out, side = tmp_path / "out.mp4", tmp_path / "out.json"
    rc, err = stop_when(["pixelate", clip, "-o", out, "--boxes-out", side, "--preset", "veryslow", "-q"],
                        lambda: hidden(tmp_path), sig)
    assert rc == status and err.strip() == f"Interrupted ({sig.name}).", err
    assert hidden(tmp_path) == [] and not out.exists() and not side.exists()


@pytest.mark.parametrize("group", [False, True], ids=["parent", "group"])
def test_prepare_with_two_workers_stopped_by_sigterm(tmp_path, group):
    clips = [write_face_clip(tmp_path / f"c{i}.mp4", n=120, size=(560, 240), dx=3) for i in range(3)]
    out = tmp_path / "crops"

    def writing():
        return (out / "tracks").is_dir() and any(TMP_TAG in p.name for p in (out / "tracks").iterdir())

    rc, err = stop_when(["prepare", *clips, "-o", out, "-j", "2", "--size", "32", "--preset", "veryslow", "-q"],
                        writing, signal.SIGTERM, group)
    assert rc == 143 and err.strip() == "Interrupted (SIGTERM).", err  # no resource_tracker warning either
    assert hidden(out) == []
    index = json.loads((out / "index.json").read_text()) if (out / "index.json").exists() else None
    listed = sorted(Path(e["file"]).name for e in index["tracks"]) if index else []
    on_disk = sorted(p.name for p in (out / "tracks").iterdir()) if (out / "tracks").exists() else []
    assert on_disk == listed  # only whole clips, each listed


def test_train_stopped_by_sighup_checkpoints_and_exits_129(tmp_path):
    from tests.train.test_compact import _crop_dir

    config = _crop_dir(tmp_path)
    log = tmp_path / "run" / "log.jsonl"
    rc, err = stop_when(["train", tmp_path / "crops", "-o", tmp_path / "run", "--config", config, "--steps",
                         "100000", "--batch-size", "2", "--log-every", "1", "--val-every", "1000", "--ckpt-every",
                         "100000", "--ckpt-minutes", "0", "-q"],
                        lambda: log.exists() and len(log.read_text().splitlines()) >= 2, signal.SIGHUP)
    assert rc == 129 and err.strip().splitlines()[-1] == "Interrupted (SIGHUP).", err
    assert (tmp_path / "run" / "checkpoint.pt").exists() and (tmp_path / "run" / "model.safetensors").exists()
    assert hidden(tmp_path / "run") == []
