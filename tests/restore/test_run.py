"""`depix run` end to end on generated clips with a tiny random model (CPU, offline, seconds)."""

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.errors import WeightsError
from depixcli.geometry.crop import head_box
from depixcli.geometry.mosaic import apply_mosaic, grid_from_blocks
from depixcli.io.synthetic import synthetic_face_frames, write_test_clip
from depixcli.io.video import probe, read_frames
from depixcli.model.reconstructor import Reconstructor
from depixcli.model.weights import default_weights_path
from depixcli.restore.blend import (
    blend_mask,
    colour_match,
    crop_box_for_rect,
    face_box_from_rect,
    feather_width,
    is_full_frame,
    paste,
    rect_for_face,
)
from depixcli.restore.config import RunConfig, RunStats
from depixcli.restore.run import run_video
from depixcli.restore.stacks import reconstruct_pass
from depixcli.restore.tracks import tracks_from_faces
from tests.synthetic import FACE, SIZE, TINY, mosaic_clip
from tests.io.test_video import assert_timing_and_audio_kept

torch.set_num_threads(1)


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
    assert (m[10:30, 10:30] == 1).all()  # every mosaic pixel is replaced
    assert 0.5 < m[20, 30] < 1 and 0 < m[20, 32] < 0.5 and (m[20, 34:] == 0).all() and m[0, 0] == 0
    assert feather_width((0, 0, 400, 200)) > feather_width((0, 0, 100, 50))  # proportional to the face


def test_colour_match_takes_the_low_frequencies_of_the_reference():
    rng = np.random.default_rng(0)
    detail = rng.normal(0, 10, (40, 40, 3)).astype(np.float32)
    recon = 100 + detail
    out = colour_match(recon, np.full((40, 40, 3), 160, np.float32), 4.0)
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
    assert changed[:, 1].min() >= grid.x0 - f - 1 and changed[:, 1].max() < grid.x1 + f + 1
    assert changed[:, 0].min() >= grid.y0 - f - 1 and changed[:, 0].max() < grid.y1 + f + 1


def test_default_weights_from_env_and_clear_error(tmp_path, monkeypatch, tiny_weights):
    monkeypatch.setenv("DEPIX_WEIGHTS", str(tiny_weights))
    assert default_weights_path() == tiny_weights
    monkeypatch.setenv("DEPIX_WEIGHTS", str(tmp_path / "nope.safetensors"))
    with pytest.raises(WeightsError, match="nope.safetensors"):
        default_weights_path()


# ------------------------------------------------------------------------------------------ streaming
def test_frames_without_mosaic_are_untouched_and_faces_change_inside_the_mask(tmp_path, tiny_weights):
    from depixcli.model.weights import load_model

    path = tmp_path / "part.mp4"
    mosaic_clip(path, 20, frames_with_mosaic=range(5, 14))
    faces = np.tile(np.asarray(FACE), (9, 1))
    tracks = tracks_from_faces([(5, faces)])
    model = Reconstructor(load_model(tiny_weights), "cpu")
    results, stats = {}, RunStats()
    reconstruct_pass(path, tracks, model, lambda p, img: results.setdefault(p.frame.index, (p.image, img)),
                     RunConfig(batch_size=3), stats)
    assert sorted(results) == list(range(20))
    decoded = {f.index: f.image for f in read_frames(path)}
    rect = tracks[0].rect(5)
    f = feather_width(rect)
    for t, (_, out) in results.items():
        src = decoded[t]
        if not 5 <= t < 14:
            assert np.array_equal(out, src), t  # bit-exact before encoding
            continue
        changed = np.argwhere((out != src).any(-1))
        inside = (changed[:, 1] >= rect[0] - f - 1) & (changed[:, 1] < rect[2] + f + 1)
        inside &= (changed[:, 0] >= rect[1] - f - 1) & (changed[:, 0] < rect[3] + f + 1)
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
def test_region_keeps_frames_timestamps_fps_and_audio(tmp_path, pixelated_clip, tiny_weights):
    src, grid = pixelated_clip
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--device", "cpu", "--region",
                f"{grid.x0},{grid.y0},{grid.x1 - grid.x0},{grid.y1 - grid.y0}", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert "16 frames" in r.output and "1 face track" in r.output
    a, b = probe(src), probe(out)
    assert (b.frames, b.fps, b.width, b.height, b.has_audio) == (16, a.fps, a.width, a.height, True)
    assert_timing_and_audio_kept(src, out)
    fin, fout = next(read_frames(src)).image, next(read_frames(out)).image
    diff = np.abs(fin.astype(int) - fout.astype(int)).max(-1)
    assert diff[grid.y0 + 4 : grid.y1 - 4, grid.x0 + 4 : grid.x1 - 4].mean() > 2 * diff[:, :40].mean() + 1


def write_sidecar(path, n_frames, faces_by_track):
    """A `depix pixelate` sidecar (version 1): {track id: {frame: face box}}, grids as pixelate makes them."""
    from depixcli.pixelate import PixelateConfig

    pix = PixelateConfig(blocks=8)
    frames = [{"index": t, "pts": None, "faces": [
        {"track": tid, "box": list(boxes[t]), "filled": False, "grid": pix.grid(boxes[t]).to_dict()}
        for tid, boxes in faces_by_track.items() if t in boxes]} for t in range(n_frames)]
    path.write_text(json.dumps({"version": 1, "tracks": [], "frames": frames}))


def test_boxes_sidecar(tmp_path, pixelated_clip, tiny_weights):
    src, grid = pixelated_clip
    boxes = tmp_path / "tracks.json"
    write_sidecar(boxes, 16, {0: {t: FACE for t in range(4, 12)}})
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--device", "cpu", "--boxes", boxes)
    assert r.exit_code == 0, r.output
    assert "1 face track(s) (boxes)" in r.output and "8 frames with faces" in r.output
    assert "block size (px): 5.8x7.8" in r.output  # the grid's block size, read from the sidecar
    assert probe(out).frames == 16
    assert_timing_and_audio_kept(src, out)


def test_sidecar_gaps_split_tracks_and_nothing_is_pasted_there(tmp_path):
    from depixcli.io.sidecar import face_spans, read_sidecar

    path = tmp_path / "s.json"
    write_sidecar(path, 12, {3: {t: FACE for t in (0, 1, 2, 6, 7)}, 5: {t: (1, 2, 30, 40) for t in (4, 5)}})
    spans = face_spans(read_sidecar(path))
    assert [(s[0], len(s[1])) for s in spans] == [(0, 3), (4, 2), (6, 2)]
    tracks = tracks_from_faces(spans)
    assert tracks[0].cell(0) == pytest.approx(max(tracks[0].cells[0]))
    path.write_text(json.dumps({"tracks": []}))
    with pytest.raises(Exception, match="not a `depix pixelate` sidecar"):
        read_sidecar(path)


def moving_mosaic(frames, x0=40.0, speed=1.0, side=60.0, cell=(6.0, 6.0)):
    """Per-frame observations `(rect, cell)` of one square mosaic moving right by `speed` px per frame."""
    return {t: ((x0 + speed * t, 30.0, x0 + speed * t + side, 30.0 + side), cell) for t in frames}


def observations(n, *mosaics):
    return [[m[t] for m in mosaics if t in m] for t in range(n)]


def test_mosaic_missed_longer_than_the_tracker_gap_stays_one_track_with_filled_frames():
    from depixcli.faces.track import MAX_GAP
    from depixcli.faces.track import LINK_GAP_S
    from depixcli.restore.tracks import tracks_from_rects

    fps = 25.0
    gap = range(20, 20 + MAX_GAP + 10)  # longer than build_tracks bridges, shorter than LINK_GAP_S
    assert MAX_GAP < len(gap) <= LINK_GAP_S * fps
    seen = [t for t in range(60) if t not in gap]
    tracks = tracks_from_rects(observations(60, moving_mosaic(seen)), (120, 200), fps)
    assert len(tracks) == 1
    tr = tracks[0]
    assert (tr.start, tr.end) == (0, 59)
    assert np.flatnonzero(tr.filled).tolist() == list(gap)
    for t in (gap[0], gap[len(gap) // 2], gap[-1]):  # the rect moves on linearly over the gap
        assert tr.rect(t) == pytest.approx((40.0 + t, 30.0, 100.0 + t, 90.0), abs=0.5)
    assert tr.cells[~tr.filled] == pytest.approx(np.full((len(seen), 2), 6.0))
    assert tr.cells[tr.filled] == pytest.approx(np.full((len(gap), 2), 6.0))
    # a gap longer than LINK_GAP_S is not bridged
    late = [t for t in range(120) if t < 10 or t > 10 + LINK_GAP_S * fps]
    assert len(tracks_from_rects(observations(120, moving_mosaic(late, speed=0.0)), (120, 200), fps)) == 2


@pytest.mark.parametrize("second", [
    {"cell": (9.0, 9.0)},  # same place, another block size
    {"x0": 140.0},  # same block size, far away
])
def test_different_mosaics_on_either_side_of_a_gap_are_not_linked(second):
    from depixcli.restore.tracks import tracks_from_rects

    first = moving_mosaic(range(20), speed=0.0)
    later = moving_mosaic(range(40, 60), **{"speed": 0.0, **second})
    tracks = tracks_from_rects(observations(60, first, later), (120, 260), 25.0)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 19), (40, 59)]
    assert not any(tr.filled.any() for tr in tracks)
    assert tracks[1].cells[0] == pytest.approx(second.get("cell", (6.0, 6.0)))


def test_boxes_sidecar_without_faces_copies_the_video(tmp_path, pixelated_clip, tiny_weights):
    src, _ = pixelated_clip
    boxes = tmp_path / "tracks.json"
    write_sidecar(boxes, 16, {})
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--boxes", boxes)
    assert r.exit_code == 0 and "copied unchanged" in r.output
    assert out.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("content", [None, b"not a safetensors file at all"])
def test_missing_or_corrupt_weights_is_one_line_exit_1(tmp_path, pixelated_clip, content):
    src, _ = pixelated_clip
    w = tmp_path / "w.safetensors"
    if content is not None:
        w.write_bytes(content)
    r = run_cli(src, "-o", tmp_path / "o.mp4", "-w", w, "--region", "10,10,40,40")
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "Error:" in r.output and "w.safetensors" in r.output
    assert not (tmp_path / "o.mp4").exists()


def test_missing_input_is_one_line_exit_1(tmp_path, tiny_weights):
    r = run_cli(tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4", "-w", tiny_weights)
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "nope.mp4" in r.output


def test_output_equal_to_input_is_refused(pixelated_clip, tiny_weights):
    src, _ = pixelated_clip
    before = src.read_bytes()
    r = run_cli(src, "-o", src, "-w", tiny_weights, "--region", "10,10,40,40")
    assert r.exit_code == 1 and "Error:" in r.output
    assert src.read_bytes() == before


def test_bad_flags_exit_2(pixelated_clip, tiny_weights):
    src, _ = pixelated_clip
    assert run_cli(src, "-o", "x.mp4", "--region", "1,2,3").exit_code == 2
    assert run_cli(src, "-o", "x.mp4", "--side-by-side").exit_code == 2
    assert run_cli(src, "-o", "x.mp4", "--region", "1,2,3,4", "--pixelate", "8").exit_code == 2


def test_a_perfect_reconstruction_pastes_back_closer_to_the_original(monkeypatch):
    from depixcli.restore import blend as reconstruct

    # the synthetic backdrop is itself 8 px blocks on the whole-frame mosaic's grid: to smooth_grid_steps
    # its steps are what a model leaves of the mosaic (a face's are not: tests/restore/test_edges.py)
    monkeypatch.setattr(reconstruct, "STEPS", False)
    frame = next(synthetic_face_frames(1, (320, 240)))
    face = (130.0, 70.0, 190.0, 150.0)
    grid = grid_from_blocks(rect_for_face(face), 12)
    mosaic = apply_mosaic(frame, grid)
    box = crop_box_for_rect(grid.rect, mosaic.shape[:2])
    from depixcli.geometry.crop import crop

    out = paste(mosaic, crop(frame, box, 128), box, grid.rect, grid.cell_w)
    x0, y0, x1, y1 = grid.rect
    err = lambda img: np.abs(img.astype(float) - frame.astype(float))[y0:y1, x0:x1].mean()  # noqa: E731
    assert err(out) < 0.5 * err(mosaic)
    crop_frame = next(synthetic_face_frames(1, (128, 128)))  # a whole-frame mosaic: replaced to the edges
    mosaic = apply_mosaic(crop_frame, grid_from_blocks((0, 0, 128, 128), 16))
    box = crop_box_for_rect((0, 0, 128, 128), (128, 128))
    out = paste(mosaic, crop_frame, box, (0, 0, 128, 128), 8.0)
    assert np.abs(out.astype(int) - crop_frame).mean() < 0.15 * np.abs(mosaic.astype(int) - crop_frame).mean()


def test_no_mosaic_found_copies_the_video(tmp_path, tiny_weights):
    src = tmp_path / "clean.mp4"
    write_test_clip(src, synthetic_face_frames(6, SIZE))
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights)
    assert r.exit_code == 0, r.output
    assert "no pixelated face" in r.output and "copied unchanged" in r.output
    assert out.read_bytes() == src.read_bytes()
    mkv = tmp_path / "out.mkv"  # another container: the frames are re-encoded untouched
    r = run_cli(src, "-o", mkv, "-w", tiny_weights, "-q")
    assert r.exit_code == 0 and "copied unchanged" in r.output
    assert probe(mkv).frames == 6 and [f.time for f in read_frames(mkv)] == [f.time for f in read_frames(src)]


def test_research_mode_side_by_side_with_scores(tmp_path, tiny_weights):
    frames = astronaut_clip(tmp_path / "astro.mp4", 8)
    src = tmp_path / "astro.mp4"
    out = tmp_path / "sbs.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--pixelate", "8", "--side-by-side", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert "1 face track" in r.output and "face PSNR dB: pixelated" in r.output and "identity cosine" in r.output
    info = probe(out)
    assert (info.width, info.height, info.frames, info.has_audio) == (600, 200, 8, True)
    assert_timing_and_audio_kept(src, out)
    left, middle, _ = np.split(next(read_frames(out)).image.astype(int), 3, axis=1)
    assert np.abs(left - frames[0]).mean() < 4  # the original, re-encoded
    assert np.abs(middle - left)[60:140, 60:140].mean() > 4  # the pixelated face differs from it


def test_located_mosaic_is_reconstructed(tmp_path, tiny_weights):
    grid = grid_from_blocks((109, 63, 211, 201), 8)  # px: over the synthetic face of a 320 x 240 clip
    src = tmp_path / "pix.mp4"
    write_test_clip(src, [apply_mosaic(f, grid) for f in synthetic_face_frames(10, (320, 240))], audio=True)
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert "1 face track(s) (located)" in r.output
    assert_timing_and_audio_kept(src, out)
    w, h = (float(v) for v in re.search(r"block size \(px\): ([\d.]+)x([\d.]+)", r.output).groups())
    assert abs(w - grid.cell_w) < 0.3 and abs(h - grid.cell_h) < 0.3
    changed = 0
    for a, b in zip(read_frames(src), read_frames(out)):
        d = np.abs(a.image.astype(int) - b.image.astype(int)).max(-1)
        assert d[:, :60].mean() < 6  # background: only re-encoding noise (the clip's noise texture)
        changed += d[grid.y0 + 8 : grid.y1 - 8, grid.x0 + 8 : grid.x1 - 8].mean() > 3 * d[:, :60].mean() + 1
    assert changed >= 5  # the frames the mosaic was found on (and the gaps between them)


def test_whole_frame_mosaic_crop_video(tmp_path, tiny_weights):
    grid = grid_from_blocks((0, 0, 128, 128), 16)  # the paper's 16 x 16 crops: the frame is the mosaic
    src = tmp_path / "crop.mp4"
    write_test_clip(src, [apply_mosaic(f, grid) for f in synthetic_face_frames(6, (128, 128))])
    out = tmp_path / "out.mp4"
    r = run_cli(src, "-o", out, "-w", tiny_weights, "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert "1 face track(s) (located)" in r.output
    a, b = (next(read_frames(p)).image.astype(int) for p in (src, out))
    assert probe(out).frames == 6
    assert np.abs(a - b).max(-1)[8:120, 8:120].mean() > 2  # reconstructed all over, not just a patch


def test_faces_entering_and_leaving_and_memory_of_finished_tracks(tmp_path, tiny_weights):
    from depixcli.model.weights import load_model

    path = tmp_path / "many.mp4"
    write_test_clip(path, synthetic_face_frames(30, SIZE))
    faces = np.asarray([FACE])
    other = np.asarray([[10.0, 10.0, 40.0, 50.0]])  # a second face, left of the first
    spans = [(0, 8, faces), (4, 14, other), (12, 20, faces), (22, 30, faces), (25, 29, other)]
    tracks = tracks_from_faces([(a, np.repeat(box, b - a, 0)) for a, b, box in spans])
    model = Reconstructor(load_model(tiny_weights), "cpu")
    results, stats = {}, RunStats()
    reconstruct_pass(path, tracks, model, lambda p, img: results.setdefault(p.frame.index, (p.image, sorted(p.recons))),
                     RunConfig(batch_size=2), stats)
    assert stats.stacks == sum(b - a for a, b, _ in spans)
    for t, (_, ids) in results.items():
        assert ids == [i for i, (a, b, _) in enumerate(spans) if a <= t < b], t
    assert stats.max_buffered_crops <= 2 * (2 * TINY.window * TINY.stride + 2 + 1)  # two faces at most at once


def astronaut_clip(path, n):
    """A clip panning over skimage's astronaut (one real face), 200 x 200."""
    import cv2
    from skimage.data import astronaut as load_astronaut  # skimage ships with face-alignment

    img = load_astronaut()  # (512, 512, 3) RGB
    frames = [cv2.resize(img[10 + i : 410 + i, 60 + 2 * i : 460 + 2 * i], (200, 200), interpolation=cv2.INTER_AREA)
              for i in range(n)]
    write_test_clip(path, frames, audio=True)
    return frames


def test_pixelate_sidecar_and_locator_agree(tmp_path, tiny_weights):
    from depixcli.pixelate import PixelateConfig, pixelate_video

    astronaut_clip(tmp_path / "a.mp4", 6)
    pixelate_video(tmp_path / "a.mp4", tmp_path / "pix.mp4", PixelateConfig(blocks=8), boxes_out=tmp_path / "a.json")
    outputs = []
    for extra in (["--boxes", tmp_path / "a.json"], [], ["--detector", "yunet"]):
        r = run_cli(tmp_path / "pix.mp4", "-o", tmp_path / "out.mp4", "-w", tiny_weights, *extra)
        assert r.exit_code == 0, r.output
        assert "1 face track(s)" in r.output and "6 frames with faces" in r.output
        outputs.append([float(v) for v in re.search(r"block size \(px\): ([\d.]+)x([\d.]+)", r.output).groups()])
    assert np.allclose(outputs[0], outputs[1], atol=0.3)  # the locator finds the grid the sidecar records
    assert outputs[2] == outputs[1]  # and the detector confirms it is a face


@pytest.mark.parametrize("region", ["0,0,12,12", "140,90,100,100", "0,0,160,40"])
def test_mosaic_at_the_border_or_not_a_face_never_crashes(tmp_path, pixelated_clip, tiny_weights, region):
    src, _ = pixelated_clip
    r = run_cli(src, "-o", tmp_path / "o.mp4", "-w", tiny_weights, "--region", region, "-q", "--preset", "ultrafast")
    assert r.exit_code == 0, r.output
    assert probe(tmp_path / "o.mp4").frames == 16


def test_detector_second_opinion_leaves_a_mosaic_without_a_face_alone(tmp_path, tiny_weights):
    grid = grid_from_blocks((40, 40, 120, 120), 8)  # over textured background: no face there
    src = tmp_path / "pix.mp4"
    write_test_clip(src, [apply_mosaic(f, grid) for f in synthetic_face_frames(4, (320, 240))])
    r = run_cli(src, "-o", tmp_path / "o.mp4", "-w", tiny_weights, "--detector", "yunet")
    assert r.exit_code == 0, r.output
    assert "without a face left alone" in r.output and "copied unchanged" in r.output


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu_fp32_and_runs_end_to_end(tmp_path, pixelated_clip, tiny_weights):
    from depixcli.model.weights import load_model

    stacks = np.random.default_rng(0).integers(0, 256, (4, TINY.frames, 32, 32, 3), dtype=np.uint8)
    cpu = Reconstructor(load_model(tiny_weights), "cpu")(stacks).astype(int)
    gpu = Reconstructor(load_model(tiny_weights), "cuda")(stacks).astype(int)
    assert np.abs(cpu - gpu).mean() < 4  # bf16 autocast: small rounding differences only
    src, grid = pixelated_clip
    cfg = RunConfig(weights=str(tiny_weights), device="cuda", region=(grid.x0, grid.y0, 47, 62), quiet=True)
    stats = run_video(src, tmp_path / "o.mp4", cfg)
    assert stats.frames == probe(tmp_path / "o.mp4").frames == 16


def test_paste_is_half_pixel_exact(monkeypatch):
    from depixcli.geometry.crop import CropBox, crop
    from depixcli.restore import blend as reconstruct

    monkeypatch.setattr(reconstruct, "STEPS", False)  # the input's block edges would be smoothed (grid steps)

    frame = apply_mosaic(next(synthetic_face_frames(1, SIZE)), grid_from_blocks((40, 20, 104, 84), 8))
    box = CropBox(72.0, 52.0, 64.0)  # 1 crop px = 1 frame px, aligned to the pixel grid
    same = crop(frame, box, 64)  # a "reconstruction" equal to the model's input
    out = paste(frame, same, box, (40, 20, 104, 84), 8.0)
    assert np.abs(out.astype(int) - frame).max() <= 1  # any half-pixel shift would smear the block edges


def test_a_part_of_the_mosaic_found_next_to_the_whole_is_not_a_second_crop():
    from depixcli.restore.tracks import tracks_from_rects

    whole = moving_mosaic(range(60))
    part = {t: ((r[0] + 6, r[1] + 30, r[0] + 36, r[3]), c) for t, (r, c) in whole.items() if 20 <= t < 32}
    tracks = tracks_from_rects(observations(60, whole, part), (120, 200), 25.0)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 59)]
    assert tracks[0].rect(25) == pytest.approx(whole[25][0])  # the whole mosaic is pasted, not the part


def test_a_frame_where_only_a_part_of_the_mosaic_is_found_is_pasted_on_the_whole_rect():
    """A low-contrast frame where the locator finds only a quarter of the mosaic (issue 11, deface's 20 px
    corner-sampled cells blending into the backdrop): its neighbours' rect is pasted there, not the part."""
    from depixcli.restore.tracks import tracks_from_rects

    whole = moving_mosaic(range(40))
    obs = dict(whole)
    for t in (20, 21):
        (x0, y0, x1, y1), cell = whole[t]
        obs[t] = ((x0 + 30.0, y0, x1, y0 + 30.0), cell)  # the top-right quarter
    tracks = tracks_from_rects(observations(40, obs), (120, 200), 25.0)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 39)]
    for t in (20, 21):
        assert tracks[0].rect(t) == pytest.approx(whole[t][0], abs=1.0) and tracks[0].filled[t]
    assert not tracks[0].filled[19] and tracks[0].rect(19) == pytest.approx(whole[19][0])


def test_a_mosaic_shrinking_to_the_frame_border_is_not_a_part():
    """A face leaving the frame: its clipped rect shrinks for good (no larger rect after it), so each frame
    keeps its own observation."""
    from depixcli.restore.tracks import tracks_from_rects

    obs = {t: ((0.0, 30.0, 60.0 - 5.0 * max(t - 20, 0), 90.0), (6.0, 6.0)) for t in range(30)}
    tracks = tracks_from_rects(observations(30, obs), (120, 200), 25.0)
    assert len(tracks) == 1
    assert not tracks[0].filled.any()
    assert tracks[0].rect(29) == pytest.approx(obs[29][0])


def test_face_anchored_block_size_that_grows_with_the_face_links_across_a_miss():
    from depixcli.faces.track import MAX_GAP
    from depixcli.restore.tracks import tracks_from_rects

    sizes = {t: 60.0 * (1 + 0.0015 * t) for t in range(100)}  # the face comes closer: +15 % over 100 frames
    seen = [t for t in range(100) if not 40 <= t < 40 + MAX_GAP + 8]
    obs = {t: ((40.0, 30.0, 40.0 + sizes[t], 30.0 + sizes[t]), (sizes[t] / 10, sizes[t] / 10)) for t in seen}
    tracks = tracks_from_rects(observations(100, obs), (200, 200), 25.0)
    assert [(tr.start, tr.end) for tr in tracks] == [(0, 99)]


def small_face_frames(n, size=(480, 360), face_w=90.0, seed=0):
    """A steady anchor: a face about `face_w` px wide drifting a few px, its detector box jittering by
    ~1 px per frame, pixelated as `depix pixelate` does (16 x 16 blocks over the box scaled 1.3)."""
    import cv2

    from depixcli.pixelate import PixelateConfig

    W, H = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    low = cv2.resize(rng.random((H // 40, W // 40, 3)).astype(np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
    base = np.clip(np.stack([60 + 80 * xx / W, 70 + 40 * yy / H, 110 - 30 * xx / W], -1) + 40 * low, 0, 255)
    base = (base + rng.normal(0, 3, base.shape)).clip(0, 255).astype(np.uint8)
    pix = PixelateConfig()
    a, b = face_w / 2, face_w * 0.65  # half width / height, px
    sub = 4  # cv2 drawing: 2 fractional bits
    for i in range(n):
        cx, cy = W * 0.55 + 2.0 * np.sin(i / 23.0), H * 0.45 + 1.5 * np.sin(i / 17.0 + 1)
        img = base.copy()
        c = (round(cx * sub), round(cy * sub))
        eye = (round(0.18 * a * sub), round(0.08 * b * sub))
        for centre, axes, colour in (
            ((c[0], c[1] - round(b * sub)), (round(1.1 * a * sub), round(0.9 * b * sub)), (50, 35, 30)),  # hair
            (c, (round(a * sub), round(b * sub)), (215, 165, 135)),  # skin
            ((c[0] - round(0.4 * a * sub), c[1] - round(0.2 * b * sub)), eye, (35, 30, 40)),
            ((c[0] + round(0.4 * a * sub), c[1] - round(0.2 * b * sub)), eye, (35, 30, 40)),
            ((c[0], c[1] + round(0.5 * b * sub)), (round(0.4 * a * sub), round(0.07 * b * sub)), (160, 60, 60)),
        ):
            cv2.ellipse(img, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA, 2)
        j = rng.normal(0, 0.7, 4)
        yield apply_mosaic(img, pix.grid((cx - a + j[0], cy - b + j[1], cx + a + j[2], cy + b + j[3])))


def test_small_steady_face_under_a_mosaic_is_one_track_with_one_crop_per_frame(tmp_path, tiny_weights):
    n = 300
    src, out = tmp_path / "anchor.mp4", tmp_path / "out.mp4"
    write_test_clip(src, small_face_frames(n))
    stats = run_video(src, out, RunConfig(weights=str(tiny_weights), quiet=True, preset="ultrafast"))
    assert stats.source == "located"
    assert (stats.frames, stats.tracks, stats.frames_with_faces) == (n, 1, n)
    assert stats.stacks == n  # one crop per frame: none pasted twice
    assert probe(out).frames == n
