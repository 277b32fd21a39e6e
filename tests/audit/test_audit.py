"""`depix audit` and `depix pixelate --secure` through the CLI on generated clips (CPU, offline, tiny model)."""

import json

import cv2
import numpy as np
import pytest
import skimage.data
from click.testing import CliRunner

from depixcli.audit.attacks import frame_region, restore_attack
from depixcli.audit.grid import analyse_mosaic, count_phases
from depixcli.audit.verdict import METRIC_CROP, NULL_MARGIN, judge
from depixcli.cli import main
from depixcli.geometry.crop import crop, head_box
from depixcli.geometry.mosaic import MosaicGrid, apply_mosaic, grid_from_blocks
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import probe, read_frames
from depixcli.restore.blend import paste, rect_for_face
from depixcli.secure import SecureMosaic, cell_means

N_FRAMES = 20
W, H = 320, 240  # px
HEAD = (140, 150)  # px, w x h of the face photo pasted into the frames


def _head_xy(i: int) -> tuple[int, int]:
    return 40 + 5 * i, 40 + 2 * i  # the face photo moves 5 px right, 2 px down per frame


def _frames(n=N_FRAMES, fill=None):
    """scikit-image's astronaut moving over a photo background; `fill`: grey level painted over the head."""
    bg = cv2.resize(skimage.data.coffee(), (W, H), interpolation=cv2.INTER_AREA)
    head = cv2.resize(skimage.data.astronaut()[0:300, 100:380], HEAD, interpolation=cv2.INTER_AREA)
    for i in range(n):
        img = bg.copy()
        x, y = _head_xy(i)
        img[y:y + HEAD[1], x:x + HEAD[0]] = head
        if fill is not None:
            img[max(y - 10, 0):y + HEAD[1] + 10, max(x - 10, 0):x + HEAD[0] + 10] = fill
        yield img


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    write_test_clip(d / "clip.mp4", _frames(), fps=25)
    from depixcli.model.config import ModelConfig
    from depixcli.model.nets import Depixelator
    from depixcli.model.weights import save_model

    tiny = ModelConfig(arch="compact", use_stn=False, compact_width=8, compact_blocks=1, window=1, stride=2)
    save_model(d / "tiny.safetensors", Depixelator(tiny), {"test": "audit"})
    return d


def _audit(work, anonymised, *extra, exit_code=0):
    """SFace's verdicts only (--no-dlib: dlib's second opinion is tested in test_audit_dlib.py, on fewer frames)."""
    out = work / f"{anonymised.stem}.json"
    res = CliRunner().invoke(main, ["audit", str(anonymised), "--original", str(work / "clip.mp4"), "-q",
                                    "-w", str(work / "tiny.safetensors"), "--json", str(out), "--no-recommend",
                                    "--no-dlib", *extra])
    assert res.exit_code == exit_code, res.output
    return json.loads(out.read_text()), res.output


def _pixelate(work, name, *args):
    out = work / f"{name}.mp4"
    res = CliRunner().invoke(main, ["pixelate", str(work / "clip.mp4"), "-o", str(out), "-q", *args])
    assert res.exit_code == 0, res.output
    return out


def test_unpixelated_copy_leaks(work):
    copy = work / "copy.mp4"
    write_test_clip(copy, (f.image for f in read_frames(work / "clip.mp4")), fps=25)
    report, text = _audit(work, copy, "--sheet", str(work / "copy.png"))
    assert report["verdict"] == "leaks" and len(report["tracks"]) == 1
    t = report["tracks"][0]
    assert t["verdict"] == "leaks" and t["scored"] == N_FRAMES
    assert t["scores"]["anonymised"]["median"] > 0.9 and t["scores"]["anonymised"]["above"] == 1.0
    assert t["scores"]["reconstructed"]["median"] > 0.8  # the tiny net starts as the identity
    assert t["mosaic"]["anchor"] == "none" and t["mosaic"]["block_px"] is None
    assert "video: LEAKS" in text and "no mosaic grid found over the face" in text
    sheet = cv2.imread(str(work / "copy.png"))
    assert sheet is not None and sheet.shape[1] >= 4 * 224 and sheet.shape[0] > 224


def test_solid_fill_holds(work):
    filled = work / "filled.mp4"
    write_test_clip(filled, _frames(fill=128), fps=25)
    report, text = _audit(work, filled, "--fail-on-leak", exit_code=0)
    t = report["tracks"][0]
    assert report["verdict"] == "holds" and t["verdict"] == "holds", text
    for attack in ("anonymised", "smoothed", "reconstructed"):  # no more than any featureless image
        assert t["scores"][attack]["median"] < t["featureless"] + NULL_MARGIN and t["scores"][attack]["above"] == 0.0
    assert 0.0 < t["featureless"] < 0.35  # SFace's cosine of a flat patch of the face's colour: not 0
    assert "video: HOLDS" in text


def test_fail_on_leak_exit_status(work):
    """--fail-on-leak: a leaking video exits 3 after printing its table (without it: 0, as above)."""
    copy = work / "copy_fail.mp4"
    write_test_clip(copy, (f.image for f in read_frames(work / "clip.mp4")), fps=25)
    report, text = _audit(work, copy, "--fail-on-leak", "--frames", "4", exit_code=3)
    assert report["verdict"] == "leaks" and "video: LEAKS" in text


@pytest.mark.parametrize("kind", ["size", "frames"])
def test_mismatched_videos_one_line_error(work, kind):
    other = work / f"other_{kind}.mp4"
    if kind == "size":
        write_test_clip(other, (cv2.resize(f, (W // 2, H // 2)) for f in _frames()), fps=25)
    else:
        write_test_clip(other, _frames(n=N_FRAMES - 3), fps=25)
    res = CliRunner().invoke(main, ["audit", str(other), "--original", str(work / "clip.mp4"), "-q",
                                    "-w", str(work / "tiny.safetensors")])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "not an anonymised copy" in lines[0]
    assert ("160x120" in lines[0]) if kind == "size" else (f"{N_FRAMES - 3} frames" in lines[0])


def test_missing_weights_one_line_error(work):
    res = CliRunner().invoke(main, ["audit", str(work / "clip.mp4"), "--original", str(work / "clip.mp4"),
                                    "-w", str(work / "nope.safetensors")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1


def test_face_anchored_mosaic_analysis(work):
    report, _ = _audit(work, _pixelate(work, "b16", "--blocks", "16"))
    t = report["tracks"][0]
    m = t["mosaic"]
    assert m["located"] >= 0.5 and abs(m["blocks"] - 16) < 1.0  # 3.75 px blocks: the locator misses some
    assert m["anchor"] == "face" and m["phases"] == 1 and m["values"] == "means"
    assert t["scores"]["anonymised"]["median"] < t["scores"]["anonymised"]["max"] < 0.9  # hidden, not absent


def test_image_anchored_grid_shows_many_phases(work):
    report, text = _audit(work, _pixelate(work, "px8", "--block-size", "8", "--value", "center"))
    m = report["tracks"][0]["mosaic"]
    assert abs(m["block_px"][0] - 8) < 0.5 and m["anchor"] == "image" and m["phases"] >= 4
    assert m["values"] == "samples"
    row = next(ln for ln in text.splitlines() if ln.lstrip().startswith("0 ") and " | " in ln)  # the table's row
    assert "  image " in row


@pytest.fixture(scope="module")
def secure(work):
    """`depix pixelate --secure` of the clip and its sidecar, made once for the --secure tests (in any order)."""
    sec = _pixelate(work, "secure", "--secure", "--boxes-out", str(work / "secure_boxes.json"))
    return sec, json.loads((work / "secure_boxes.json").read_text())


def test_secure_mosaic_holds(work, secure):
    sec, side = secure
    info = probe(sec)
    assert info.frames == N_FRAMES and (info.width, info.height) == (W, H)
    report, text = _audit(work, sec)
    t = report["tracks"][0]
    assert t["verdict"] == "holds", text
    assert t["scores"]["reconstructed"]["median"] < max(0.2, t["featureless"] + NULL_MARGIN)
    assert t["mosaic"]["values"] in ("neither", "unclear") and t["mosaic"]["phases"] <= 1
    # the face is covered: inside the recorded grid the frame changed, and it shows few distinct colours
    assert side["config"]["secure"]["blocks"] == 6
    for src, dst, rec in zip(read_frames(work / "clip.mp4"), read_frames(sec), side["frames"]):
        x0, y0, x1, y1 = rec["faces"][0]["grid"]["rect"]
        x0, y0 = max(x0, 0), max(y0, 0)
        a, b = src.image[y0:y1, x0:x1].astype(int), dst.image[y0:y1, x0:x1].astype(int)
        assert np.abs(a - b).mean() > 10


def test_secure_values_held_between_refreshes(secure):
    sec, side = secure
    side_frames = side["frames"]
    means = []
    for f, rec in zip(read_frames(sec), side_frames):
        g = MosaicGrid.from_dict(rec["faces"][0]["grid"])
        cx, cy = int(g.x0 + 2.5 * g.cell_w), int(g.y0 + 2.5 * g.cell_h)  # the centre of block (2, 2)
        means.append(f.image[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).mean(0))
    steps = np.abs(np.diff(np.array(means), axis=0)).max(axis=1)
    hold = round(0.5 * 25)
    within = [s for i, s in enumerate(steps, start=1) if i % hold]  # frame i vs i - 1, same refresh
    assert max(within) < 6  # codec noise only


def test_phase_count_and_verdict_rules():
    rng = np.random.default_rng(0)
    assert count_phases(0.01 + 0.01 * rng.standard_normal(50) % 1.0, np.full(50, 0.99)) == 1  # noise at a bin edge
    assert count_phases(np.linspace(0, 1, 64, endpoint=False), np.zeros(64)) == 4
    from depixcli.audit.verdict import AttackScore

    m = analyse_mosaic([], 10)
    low = {a: AttackScore(0.1, 0.0, 0.0, 0.3, 5, 34) for a in ("anonymised", "smoothed", "reconstructed")}
    assert judge(low, m)[0] == "holds"
    assert judge({**low, "anonymised": AttackScore(0.25, 0.0, 0.0, 0.3, 5, 34)}, m, featureless=0.2)[0] == "holds"
    assert judge({**low, "anonymised": AttackScore(0.35, 0.0, 0.0, 0.3, 5, 34)}, m, featureless=0.2)[0] == "leaks"
    assert judge({**low, "reconstructed": AttackScore(0.1, 0.0, 0.0, 0.3, 1, 34)}, m)[0] == "leaks"  # re-identified
    assert judge({**low, "reconstructed": AttackScore(0.1, 0.0, 0.0, 0.3, 1, 3)}, m)[0] == "holds"  # gallery too small
    rank1 = {**low, "reconstructed": AttackScore(0.1, 0.0, 0.0, 0.3, 1, 34)}
    assert judge(rank1, m, featureless_rank=1)[0] == "holds"  # the face's colour alone finds it: not the mosaic
    assert judge({**low, "smoothed": AttackScore(0.15, 0.2, 0.2, 0.5, 5, 34)}, m)[0] == "leaks"  # 20 % above
    assert judge({**low, "smoothed": AttackScore(0.15, 0.2, 0.0, 0.5, 5, 34)}, m)[0] == "holds"  # ... as blank is


def _inside_cells(grid: MosaicGrid, n: int) -> np.ndarray:
    """`(n, n)` bool: the cells of an n x n face-anchored grid that lie wholly inside the W x H frame."""
    x = grid.origin_x + np.arange(n) * grid.cell_w
    y = grid.origin_y + np.arange(n) * grid.cell_h
    return ((y >= 0) & (y + grid.cell_h <= H))[:, None] & ((x >= 0) & (x + grid.cell_w <= W))[None, :]


def test_secure_values_are_noised_and_quantised(work, secure):
    """--secure shows each block as a quantisation level (`step` apart) of its mean plus uniform noise of
    `noise` steps: not the plain quantisation (the noise moves many blocks to a neighbouring level), and never
    further from the mean than the noise and half a step (plus codec noise)."""
    sec, side = secure
    cfg = SecureMosaic()
    levels = np.arange(256 // cfg.step) * cfg.step + (cfg.step - 1) / 2
    hold = cfg.hold_frames(25)
    first = side["tracks"][0]["first_frame"]
    off_level, moved, far, n = [], 0, 0, 0
    for src, dst, rec in zip(read_frames(work / "clip.mp4"), read_frames(sec), side["frames"]):
        if (rec["index"] - first) % hold:
            continue  # held values were taken from an earlier frame
        grid = MosaicGrid.from_dict(rec["faces"][0]["grid"])
        inside = _inside_cells(grid, cfg.blocks)
        mean = cell_means(src.image, grid, cfg.blocks)[inside]
        shown = cell_means(dst.image, grid, cfg.blocks)[inside]
        off_level.append(np.abs(shown[..., None] - levels).min(-1).ravel())
        plain = np.floor(mean / cfg.step) * cfg.step + (cfg.step - 1) / 2  # quantised without noise
        moved += int((np.abs(shown - plain) > cfg.step / 2).sum())
        far += int((np.abs(shown - mean) > cfg.step * (cfg.noise / 2 + 0.5) + 6).sum())
        n += shown.size
    assert n >= 3 * 36 * 2  # two refreshes of 6 x 6 blocks at least
    assert np.median(np.concatenate(off_level)) < 3  # on a quantisation level, up to codec noise
    assert moved / n > 0.25 and far == 0, (moved / n, far)


@pytest.mark.parametrize("located", [True, False])
def test_reconstruction_attack_is_depix_runs_paste(located):
    """The audit's `reconstructed` attack pastes as `depix run` does: on the frame region it keeps, it gives the
    head crop of `restore.blend.paste` over the whole frame, evidence step and colour match included."""
    frame = next(_frames(1))
    face = np.array([70.0, 62.0, 170.0, 180.0])  # px, around the astronaut's face in the first frame
    grid = grid_from_blocks(rect_for_face(face), 8)
    mosaicked = apply_mosaic(frame, grid)
    box = head_box(face)
    source = crop(mosaicked, box, 48)
    recon = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    if located:
        whole = paste(mosaicked, recon, box, grid.rect, (grid.cell_w, grid.cell_h), source,
                      origin=(grid.origin_x, grid.origin_y), values="unclear")
    else:
        whole = paste(mosaicked, recon, box, rect_for_face(face), None, source, values="unclear")
    got = restore_attack(frame_region(mosaicked, face), recon, source, face, grid if located else None)
    assert np.abs(got.astype(int) - crop(whole, box, METRIC_CROP).astype(int)).max() <= 1
    assert np.abs(got.astype(int) - crop(mosaicked, box, METRIC_CROP).astype(int)).mean() > 5  # it did paste


def test_gallery_without_photos_names_the_flag(work, tmp_path):
    """The library says what is wrong with the folder; the CLI names the flag it came from."""
    res = CliRunner().invoke(main, ["audit", str(work / "clip.mp4"), "--original", str(work / "clip.mp4"), "-q",
                                    "-w", str(work / "tiny.safetensors"), "--gallery", str(tmp_path)])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [
        f"Error: --gallery {tmp_path}: no images (.jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff)"]
