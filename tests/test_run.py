"""`depix run` end to end on generated clips with a tiny random model (CPU, offline, seconds)."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.errors import WeightsError
from depixcli.geometry import head_box
from depixcli.models import Depixelator, ModelConfig
from depixcli.mosaic import apply_mosaic, grid_from_blocks
from depixcli.reconstruct import (
    Reconstructor,
    blend_mask,
    colour_match,
    crop_box_for_rect,
    default_weights_path,
    face_box_from_rect,
    feather_width,
    is_full_frame,
    paste,
    rect_for_face,
)
from depixcli.run import RunConfig, RunStats, reconstruct_pass, run_video, tracks_from_faces
from depixcli.video import probe, read_frames, synthetic_face_frames, write_test_clip
from depixcli.weights import save_model

torch.set_num_threads(1)

SIZE = (160, 120)  # px, w x h of the test clips
FACE = (62.0, 34.0, 98.0, 82.0)  # px, a face box near the synthetic face's mean position
TINY = ModelConfig(crop_size=32, window=1, stride=2, stn_size=16, stn_widths=(4, 4, 4, 4, 4), width=4)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_model(path, Depixelator(TINY), {"note": "random, for tests"})
    return path


def mosaic_clip(path, n, frames_with_mosaic=None, audio=False, blocks=8):
    """Synthetic face clip with an n x n mosaic over `rect_for_face(FACE)` on the chosen frames."""
    grid = grid_from_blocks(rect_for_face(FACE), blocks)
    chosen = range(n) if frames_with_mosaic is None else frames_with_mosaic
    images = [apply_mosaic(f, grid) if i in chosen else f for i, f in enumerate(synthetic_face_frames(n, SIZE))]
    write_test_clip(path, images, audio=audio)
    return grid


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("c") / "pix.mp4"
    grid = mosaic_clip(path, 16, audio=True)
    return path, grid


def run_cli(*args):
    return CliRunner().invoke(main, ["run", *map(str, args)])


# ------------------------------------------------------------------------------------------ geometry
def test_rect_and_face_box_round_trip_to_the_training_head_crop():
    rect = rect_for_face(FACE)
    assert np.allclose(face_box_from_rect(rect), FACE)
    assert crop_box_for_rect(rect, (720, 1280)) == head_box(FACE)


def test_full_frame_mosaic_crops_the_whole_frame():
    assert is_full_frame((0, 0, 64, 64), (64, 64))
    box = crop_box_for_rect((0, 0, 64, 64), (64, 64))
    assert (box.cx, box.cy, box.size) == (32.0, 32.0, 64.0)
    assert not is_full_frame((10, 10, 40, 40), (64, 64))


def test_mask_covers_the_mosaic_and_fades_outside_it():
    rect = (10.0, 10.0, 30.0, 30.0)
    m = blend_mask(rect, 4.0, (0, 0, 40, 40))
    assert (m[12:28, 12:28] == 1).all()  # the mosaic is replaced, all but a ramp at its border
    assert 0.5 < m[20, 29] < 1 and 0 < m[20, 30] < 0.5 and (m[20, 32:] == 0).all() and m[0, 0] == 0
    assert feather_width((0, 0, 400, 200)) > feather_width((0, 0, 100, 50))  # proportional to the face


def test_colour_match_takes_the_low_frequencies_of_the_reference():
    rng = np.random.default_rng(0)
    detail = rng.normal(0, 10, (40, 40, 3)).astype(np.float32)
    recon = 100 + detail
    out = colour_match(recon, np.full((40, 40, 3), 160, np.float32), np.ones((40, 40), np.float32), 4.0)
    assert abs(out.mean() - 160) < 1.0  # colour jump removed
    assert np.corrcoef(out.ravel(), detail.ravel())[0, 1] > 0.9  # detail kept


def test_paste_changes_only_the_masked_area():
    frame = next(synthetic_face_frames(1, SIZE))
    grid = grid_from_blocks(rect_for_face(FACE), 8)
    mosaic = apply_mosaic(frame, grid)
    box = crop_box_for_rect(grid.rect, mosaic.shape[:2])
    recon = np.full((32, 32, 3), 200, np.uint8)
    out = paste(mosaic, recon, box, grid.rect, grid.cell_w)
    f = feather_width(grid.rect)
    changed = np.argwhere((out != mosaic).any(-1))
    assert len(changed)
    assert changed[:, 1].min() >= grid.x0 - f / 2 - 1 and changed[:, 1].max() < grid.x1 + f / 2 + 1
    assert changed[:, 0].min() >= grid.y0 - f / 2 - 1 and changed[:, 0].max() < grid.y1 + f / 2 + 1


def test_default_weights_from_env_and_clear_error(tmp_path, monkeypatch, tiny_weights):
    monkeypatch.setenv("DEPIX_WEIGHTS", str(tiny_weights))
    assert default_weights_path() == tiny_weights
    monkeypatch.setenv("DEPIX_WEIGHTS", str(tmp_path / "nope.safetensors"))
    with pytest.raises(WeightsError, match="nope.safetensors"):
        default_weights_path()


# ------------------------------------------------------------------------------------------ streaming
def test_frames_without_mosaic_are_untouched_and_faces_change_inside_the_mask(tmp_path, tiny_weights):
    from depixcli.weights import load_model

    path = tmp_path / "part.mp4"
    mosaic_clip(path, 20, frames_with_mosaic=range(5, 14))
    faces = np.tile(np.asarray(FACE), (9, 1))
    tracks = tracks_from_faces([(5, faces)], (SIZE[1], SIZE[0]))
    model = Reconstructor(load_model(tiny_weights), "cpu")
    results, stats = {}, RunStats()
    reconstruct_pass(path, tracks, model, lambda p, img: results.setdefault(p.frame.index, (p.image, img)),
                     RunConfig(batch_size=3), stats)
    assert sorted(results) == list(range(20))
    decoded = {f.index: f.image for f in read_frames(path)}
    rect = tracks[0].rect(5)
    f = feather_width(rect)
    for t, (src, out) in results.items():
        assert np.array_equal(src, decoded[t])
        if not 5 <= t < 14:
            assert np.array_equal(out, src), t  # bit-exact before encoding
            continue
        changed = np.argwhere((out != src).any(-1))
        inside = (changed[:, 1] >= rect[0] - f / 2 - 1) & (changed[:, 1] < rect[2] + f / 2 + 1)
        inside &= (changed[:, 0] >= rect[1] - f / 2 - 1) & (changed[:, 0] < rect[3] + f / 2 + 1)
        assert len(changed) > 50 and inside.all(), t
    assert stats.stacks == 9


@pytest.mark.parametrize("batch", [1, 4])
def test_buffered_frames_do_not_grow_with_video_length(tmp_path, tiny_weights, batch):
    peaks = []
    for n in (12, 36):
        path = tmp_path / f"len{n}.mp4"
        mosaic_clip(path, n)
        cfg = RunConfig(weights=str(tiny_weights), device="cpu", batch_size=batch, region=(54, 18, 52, 80),
                        quiet=True, preset="ultrafast")
        stats = run_video(path, tmp_path / f"out{n}.mp4", cfg)
        assert stats.frames == n and stats.stacks == n
        peaks.append((stats.max_buffered_frames, stats.max_buffered_crops))
    reach = TINY.window * TINY.stride
    assert peaks[0] == peaks[1]
    assert peaks[1][0] <= reach + batch + 1
    assert peaks[1][1] <= 2 * reach + batch + 1


# ------------------------------------------------------------------------------------------ CLI
def test_region_keeps_frames_timestamps_fps_and_audio(tmp_path, clip, tiny_weights):
    src, grid = clip
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--device", "cpu", "--region",
                f"{grid.x0},{grid.y0},{grid.x1 - grid.x0},{grid.y1 - grid.y0}", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert "16 frames" in r.output and "1 face track" in r.output
    a, b = probe(src), probe(out)
    assert (b.frames, b.fps, b.width, b.height, b.has_audio) == (16, a.fps, a.width, a.height, True)
    assert [f.pts for f in read_frames(src)] == [f.pts for f in read_frames(out)]
    fin, fout = next(read_frames(src)).image, next(read_frames(out)).image
    diff = np.abs(fin.astype(int) - fout.astype(int)).max(-1)
    assert diff[grid.y0 + 4 : grid.y1 - 4, grid.x0 + 4 : grid.x1 - 4].mean() > 2 * diff[:, :40].mean() + 1


def test_boxes_sidecar(tmp_path, clip, tiny_weights):
    src, grid = clip
    boxes = tmp_path / "tracks.json"
    boxes.write_text(json.dumps({"tracks": [{"id": 0, "frames": list(range(4, 12)), "boxes": [list(FACE)] * 8}]}))
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--device", "cpu", "--boxes", boxes, "-q")
    assert r.exit_code == 0, r.output
    assert probe(out).frames == 16


def test_boxes_sidecar_without_tracks_copies_the_video(tmp_path, clip, tiny_weights):
    src, _ = clip
    boxes = tmp_path / "tracks.json"
    boxes.write_text(json.dumps({"tracks": []}))
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--boxes", boxes)
    assert r.exit_code == 0 and "copied unchanged" in r.output
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("content", [None, b"not a safetensors file at all"])
def test_missing_or_corrupt_weights_is_one_line_exit_1(tmp_path, clip, content):
    src, _ = clip
    w = tmp_path / "w.safetensors"
    if content is not None:
        w.write_bytes(content)
    r = run_cli(src, "-o", tmp_path / "o.mp4", "-w", w, "--region", "10,10,40,40")
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "Error:" in r.output and "w.safetensors" in r.output
    assert not (tmp_path / "o.mp4").exists()


def test_output_equal_to_input_is_refused(clip, tiny_weights):
    src, _ = clip
    before = src.read_bytes()
    r = run_cli(src, "-o", src, "-w", tiny_weights, "--region", "10,10,40,40")
    assert r.exit_code == 1 and "Error:" in r.output
    assert src.read_bytes() == before


def test_bad_flags_exit_2(clip, tiny_weights):
    src, _ = clip
    assert run_cli(src, "-o", "x.mp4", "--region", "1,2,3").exit_code == 2
    assert run_cli(src, "-o", "x.mp4", "--side-by-side").exit_code == 2
    assert run_cli(src, "-o", "x.mp4", "--region", "1,2,3,4", "--pixelate", "8").exit_code == 2


def test_a_perfect_reconstruction_pastes_back_closer_to_the_original():
    frame = next(synthetic_face_frames(1, (320, 240)))
    face = (130.0, 70.0, 190.0, 150.0)
    grid = grid_from_blocks(rect_for_face(face), 12)
    mosaic = apply_mosaic(frame, grid)
    box = crop_box_for_rect(grid.rect, mosaic.shape[:2])
    from depixcli.geometry import crop

    out = paste(mosaic, crop(frame, box, 128), box, grid.rect, grid.cell_w)
    x0, y0, x1, y1 = grid.rect
    err = lambda img: np.abs(img.astype(float) - frame.astype(float))[y0:y1, x0:x1].mean()  # noqa: E731
    assert err(out) < 0.5 * err(mosaic)


def test_no_mosaic_found_copies_the_video(tmp_path, tiny_weights):
    src = tmp_path / "clean.mp4"
    write_test_clip(src, synthetic_face_frames(6, SIZE))
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights)
    assert r.exit_code == 0, r.output
    assert "no pixelated face" in r.output and "copied unchanged" in r.output
    assert out.read_bytes() == src.read_bytes()


def test_research_mode_side_by_side_with_scores(tmp_path, tiny_weights):
    import cv2

    from skimage.data import astronaut as load_astronaut

    astronaut = load_astronaut()  # (512, 512, 3) RGB, one face (skimage ships with face-alignment)
    frames = [cv2.resize(astronaut[10 + i : 410 + i, 60 + 2 * i : 460 + 2 * i], (200, 200),
                         interpolation=cv2.INTER_AREA) for i in range(8)]
    src = tmp_path / "astro.mp4"
    write_test_clip(src, frames, audio=True)
    out = tmp_path / "sbs.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--pixelate", "8", "--side-by-side", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert "1 face track" in r.output and "face PSNR dB: pixelated" in r.output and "identity cosine" in r.output
    info = probe(out)
    assert (info.width, info.height, info.frames, info.has_audio) == (600, 200, 8, True)
    left, middle, _ = np.split(next(read_frames(out)).image.astype(int), 3, axis=1)
    assert np.abs(left - frames[0]).mean() < 4  # the original, re-encoded
    assert np.abs(middle - left)[60:140, 60:140].mean() > 4  # the pixelated face differs from it
