"""`torchrun --nproc-per-node 2 -m depixcli train` on CPU (gloo): both ranks finish, only rank 0 writes,
the same command with more steps resumes (here with the temporal loss turned on). A tiny model for a few steps on
generated crops."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from depixcli.model.weights import load_model
from depixcli.train.checkpoint import load_checkpoint
from depixcli.train.config import CHECKPOINT
from tests.synthetic import write_crop_dir
from tests.train.test_compact import COMPACT, FAST
from tests.train.test_train import TRAIN, VAL

RUN_FILES = ["checkpoint.pt", "config.json", "log.jsonl", "model.safetensors"]


def torchrun(crops, run, cfg, steps, logs, *flags):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--log-dir", str(logs), "--redirects", "3", "-m", "depixcli", "train", str(crops), "-o", str(run),
           "--config", str(cfg), "--steps", str(steps), "--device", "cpu", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    per_rank = {int(p.parent.name): p.read_text() for p in Path(logs).rglob("stderr.log")}
    return res, per_rank


def test_two_ranks_on_cpu_train_write_once_and_resume(tmp_path):
    crops, run = tmp_path / "crops", tmp_path / "run"
    write_crop_dir(crops, {"train": TRAIN, "val": VAL})
    cfg = dataclasses.replace(FAST, model=dataclasses.replace(COMPACT, compact_width=8, compact_blocks=1),
                              log_every=1, val_every=3)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))

    res, ranks = torchrun(crops, run, tmp_path / "cfg.json", 3, tmp_path / "logs1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(ranks) == [0, 1]
    assert "done: stn step 0, recon step 3" in ranks[0] and "model: " in ranks[0]
    assert "done:" not in ranks[1] and "model: " not in ranks[1]  # rank 1 trains, reports and writes nothing
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES  # no temporaries, nothing per rank
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one writer: each step logged once
    meta = load_model(run / "model.safetensors").meta["train"]
    assert meta["world_size"] == 2 and meta["steps"] == 3 and meta["complete"] is True

    # resumed with the temporal loss: its stacks go through the same DDP forward and backward
    res, ranks = torchrun(crops, run, tmp_path / "cfg.json", 5, tmp_path / "logs2", "--w-temporal", "0.5",
                          "--temporal-samples", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "done: stn step 0, recon step 5" in ranks[0]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]  # resumed at step 4, not restarted
    assert [r.get("temporal", 0) > 0 for r in log] == [False] * 3 + [True] * 2
    ck = load_checkpoint(run / CHECKPOINT)
    assert int(ck["step"]) == 5 and int(ck["opt_g"]["state"][0]["step"]) == 5
    assert sorted(p.name for p in run.iterdir()) == RUN_FILES
