"""Finding mosaics without help: block size, phase and rectangle after JPEG / H.264, and no false alarms."""


import cv2
import numpy as np
import pytest
import skimage.data

from depixcli.geometry.boxes import iou as box_iou
from depixcli.geometry.mosaic import MosaicGrid, apply_mosaic, clipped_rect, grid_from_block_size, grid_from_blocks
from depixcli.io.encode import h264_roundtrip
from depixcli.io.synthetic import busy_scene
from depixcli.locate.config import MosaicRegion
from depixcli.locate.regions import locate_mosaics
from depixcli.restore.tracks import tracks_from_rects

H, W = 540, 960  # px, test frames


def _jpeg(img: np.ndarray, q: int = 80) -> np.ndarray:
    ok, enc = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1]


def _scene(seed: int) -> np.ndarray:
    """Natural-ish frame: a photo shipped with scikit-image, text and a UI bar drawn on it."""
    photos = [skimage.data.coffee, skimage.data.chelsea, skimage.data.rocket, skimage.data.astronaut]
    return busy_scene(photos[seed % len(photos)](), np.random.default_rng(seed), (W, H), noise=3)


def _face(w: int, h: int) -> np.ndarray:
    return cv2.resize(skimage.data.astronaut()[30:250, 150:330], (w, h), interpolation=cv2.INTER_AREA)


def _opencv_mosaic(img, rect, nx, ny):
    """The common OpenCV recipe (area down, nearest up), independent of depix; any box size."""
    x0, y0, x1, y1 = rect
    out = img.copy()
    small = cv2.resize(img[y0:y1, x0:x1], (nx, ny), interpolation=cv2.INTER_AREA)
    out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return out, MosaicGrid(x0, y0, x1, y1, (x1 - x0) / nx, (y1 - y0) / ny, x0, y0)


# (kind, parameter, face box x0, y0, w, h, codec)
CASES = [
    ("blocks", 16, 300, 120, 190, 240, "h264"),
    ("blocks", 8, 620, 200, 170, 200, "jpeg"),
    ("blocks", 16, 100, 300, 140, 150, "h264"),
    ("blocks", 16, 700, 330, 230, 200, "jpeg"),
    ("size", 12, 410, 60, 150, 190, "h264"),
    ("size", 20, 60, 40, 220, 260, "jpeg"),
    ("size", (14, 9), 520, 300, 180, 170, "h264"),
    ("size", 27, 760, 0, 200, 250, "h264"),
    ("opencv", (13, 17), 350, 250, 197, 221, "h264"),
    ("opencv", (11, 15), 150, 80, 123, 161, "jpeg"),
    ("opencv", (19, 16), 640, 150, 243, 247, "h264"),
    ("opencv", (10, 10), 820, 380, 111, 139, "jpeg"),
]


def _make_case(i):
    kind, param, x, y, w, h, codec = CASES[i]
    img = _scene(i)
    img[y:y + h, x:x + w] = _face(w, h)
    box = (x, y, x + w, y + h)
    if kind == "blocks":
        grid = grid_from_blocks(box, param)
        out = apply_mosaic(img, grid)
    elif kind == "size":
        grid = grid_from_block_size(box, param)
        out = apply_mosaic(img, grid)
    else:
        out, grid = _opencv_mosaic(img, box, *param)
    return (h264_roundtrip(out) if codec == "h264" else _jpeg(out)), grid


def test_detection_accuracy_after_compression():
    hits, false_alarms = 0, 0
    for i in range(len(CASES)):
        frame, grid = _make_case(i)
        gt = clipped_rect(grid, frame.shape[:2])
        regions = locate_mosaics(frame)
        false_alarms += sum(box_iou(r.rect, gt) < 0.1 for r in regions)
        best = max(regions, key=lambda r: box_iou(r.rect, gt), default=None)
        if (best is not None and box_iou(best.rect, gt) > 0.8 and abs(best.cell_w / grid.cell_w - 1) < 0.05
                and abs(best.cell_h / grid.cell_h - 1) < 0.05):
            hits += 1
    assert false_alarms == 0
    assert hits >= len(CASES) - 1, f"{hits}/{len(CASES)} mosaics found with block size within 5% and IoU > 0.8"


def test_phase_and_fractional_size():
    """OpenCV mosaic with non-divisible sizes: re-mosaicking on the located grid reproduces the frame."""
    frame, grid = _make_case(8)  # 197 / 13 = 15.15 px x 221 / 17 = 13 px cells, H.264
    r = max(locate_mosaics(frame), key=lambda r: box_iou(r.rect, grid.rect))
    assert r.cell_w == pytest.approx(197 / 13, rel=0.01) and r.cell_h == pytest.approx(13.0, rel=0.01)
    assert box_iou(r.rect, grid.rect) > 0.85  # a border row / column of cells may be lost to codec ringing
    assert abs(r.rect[0] - grid.x0) <= 1 and abs(r.rect[1] - grid.y0) <= 1
    x0, y0, x1, y1 = r.rect

    def err(g):  # mean abs change when re-mosaicking the decoded frame on grid g, inside the found rect
        return np.abs(apply_mosaic(frame, g)[y0:y1, x0:x1].astype(int) - frame[y0:y1, x0:x1].astype(int)).mean()

    truth = MosaicGrid(*r.rect, grid.cell_w, grid.cell_h, grid.origin_x, grid.origin_y)
    shifted = MosaicGrid(*r.rect, r.cell_w, r.cell_h, r.origin_x + r.cell_w / 2, r.origin_y + r.cell_h / 2)
    assert err(r.grid()) <= err(truth) + 0.2  # codec noise only, as with the true grid
    assert err(shifted) > 3 * err(truth)


@pytest.mark.parametrize("n", [16, 8])
def test_whole_frame_is_the_mosaic(n):
    """A pixelated face crop video (the paper's 16 x 16 / 8 x 8 crops): the whole frame is found."""
    crop = _face(128, 128)
    frame = h264_roundtrip(apply_mosaic(crop, grid_from_blocks((0, 0, 128, 128), n)))
    regions = locate_mosaics(frame)
    assert len(regions) == 1
    r = regions[0]
    assert r.rect == (0, 0, 128, 128)
    assert r.cell_w == pytest.approx(128 / n, rel=0.02) and r.cell_h == pytest.approx(128 / n, rel=0.02)
    assert r.blocks == pytest.approx((n, n), rel=0.02)


def test_no_false_positives():
    frames = [np.full((H, W, 3), 128, np.uint8)]  # flat
    text = np.full((H, W, 3), 30, np.uint8)
    for k in range(15):
        cv2.putText(text, "The quick brown fox 0123456789 jumps", (10, 30 + 34 * k), cv2.FONT_HERSHEY_PLAIN, 2,
                    (230, 230, 230), 2)
    frames.append(text)
    ui = np.full((H, W, 3), 240, np.uint8)  # a grid of buttons
    for yy in range(0, H, 40):
        for xx in range(0, W, 160):
            cv2.rectangle(ui, (xx + 4, yy + 4), (xx + 150, yy + 34), (200, 210, 220), -1)
            cv2.putText(ui, "Button", (xx + 20, yy + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (20, 20, 20), 2)
    frames.append(ui)
    for seed in range(4):  # clean faces on natural-ish scenes
        img = _scene(seed)
        img[100:340, 400:600] = _face(200, 240)
        frames.append(img)
    for f in frames:
        assert locate_mosaics(h264_roundtrip(f)) == []


def test_track_over_frames():
    """A mosaic moving over 8 frames, missed in one: `depix run`'s tracker makes one track, the gap filled, the
    block size known there from the frames around it."""
    base = _scene(1)
    per_frame = []
    for t in range(8):
        img = base.copy()
        x, y = 200 + 6 * t, 150 + 3 * t
        img[y:y + 200, x:x + 160] = _face(160, 200)
        if t != 4:
            img = apply_mosaic(img, grid_from_blocks((x, y, x + 160, y + 200), 16))
        per_frame.append(locate_mosaics(_jpeg(img)))
    assert per_frame[4] == [] and all(len(p) == 1 for i, p in enumerate(per_frame) if i != 4)
    obs = [[(tuple(r.rect), (r.cell_w, r.cell_h)) for r in regions] for regions in per_frame]
    tracks = tracks_from_rects(obs, base.shape[:2], 25.0)
    assert len(tracks) == 1
    tr = tracks[0]
    assert (tr.start, tr.count) == (0, 8) and list(tr.filled) == [i == 4 for i in range(8)]
    assert tr.cells[4] == pytest.approx((10.0, 12.5), rel=0.03)
    assert box_iou(tr.rect(4), (224, 162, 384, 362)) > 0.8
    assert not tr.covers(8)


# ------------------------------------------------------------------------- regressions found in `depix run`
def _face_clip_frames(size, box_wh, blocks, n, crf, seed=0, step=3):
    """Synthetic face frames (depixcli.io.synthetic) with a `blocks` x `blocks` mosaic over a moving box, each
    through H.264; returns [(frame, grid)]."""
    from depixcli.io.synthetic import synthetic_face_frames

    out = []
    w, h = size
    bw, bh = box_wh
    for i, f in enumerate(synthetic_face_frames(n, size, seed=seed)):
        cx, cy = w // 2 - 20 + step * i, h // 2 + 6
        grid = grid_from_blocks((cx - bw // 2, cy - bh // 2, cx + bw - bw // 2, cy + bh - bh // 2), blocks)
        out.append((h264_roundtrip(apply_mosaic(f, grid), crf), grid))
    return out


def _found(regions, grid, shape, iou=0.8, tol=0.05):
    gt = clipped_rect(grid, shape[:2])
    return any(box_iou(r.rect, gt) > iou and abs(r.cell_w / grid.cell_w - 1) < tol
               and abs(r.cell_h / grid.cell_h - 1) < tol for r in regions)


def test_block_size_on_small_frames_with_few_rows_of_cells():
    """GRID-corpus-sized frames (360 x 288), 16 blocks over a tall face box: the block height is found
    (not half of it, nor missed), frame after frame."""
    cases = _face_clip_frames((360, 288), (120, 200), 16, 6, crf=18, seed=1)
    hits = sum(_found(locate_mosaics(f), g, f.shape) for f, g in cases)
    assert hits == len(cases)


def test_half_period_lock_is_undone():
    """Given a grid at half the block height (a sub-harmonic lock), the period check returns the true grid:
    every other line of the half grid carries no steps."""
    from depixcli.locate.cells import refine_period
    from depixcli.locate.config import LocateConfig

    frame, grid = _make_case(0)  # 16 blocks over 190 x 240 px: 11.875 x 15 px cells
    g = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    rect = clipped_rect(grid, frame.shape[:2])
    half = (grid.cell_h / 2, grid.origin_y + grid.cell_h / 2)
    (pw, ox), (ph, oy) = refine_period(g, rect, (grid.cell_w, grid.origin_x), half, LocateConfig())
    assert pw == pytest.approx(grid.cell_w) and ox == pytest.approx(grid.origin_x)
    assert ph == pytest.approx(grid.cell_h, rel=0.01)
    k = (oy - grid.origin_y) / grid.cell_h
    assert abs(k - round(k)) < 0.05  # on a true grid line, not in between


def test_flat_backdrop_is_not_part_of_the_mosaic():
    """An image-anchored grid (`--block-size 10`) under a plain backdrop with a strip of steps at the top
    of the frame: the plain cells in between do not join the strip to the mosaic."""
    h, w = 288, 360
    lum = np.clip(225 - 0.4 * np.maximum(np.arange(w) - 40, 0), 100, 255)
    img = (lum[None, :, None] * np.array([0.2, 0.8, 1.0])[None, None]).repeat(h, 0).astype(np.uint8)
    img[0:10] = np.repeat(np.random.default_rng(0).integers(20, 90, w // 10 + 1), 10)[None, :w, None]
    img[75:h, 80:230] = _face(150, h - 75)
    grid = grid_from_block_size((82, 75, 228, 270), 10)
    frame = h264_roundtrip(apply_mosaic(img, grid), 18)
    regions = locate_mosaics(frame)
    assert len(regions) == 1
    assert box_iou(regions[0].rect, grid.rect) > 0.9 and regions[0].rect[1] >= 60


def test_compressed_small_clip_found_on_nearly_every_frame(tmp_path):
    """The `depix run` test clip (320 x 240, 8 blocks over the synthetic face, next to a noisy 8 px
    background grid) after H.264 at crf 18 and 23: found on >= 9 of 10 frames."""
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.synthetic import synthetic_face_frames, write_test_clip
    from depixcli.io.video import read_frames

    grid = grid_from_blocks((109, 63, 211, 201), 8)
    for crf in (18, 23):
        path = tmp_path / f"c{crf}.mp4"
        frames = [apply_mosaic(f, grid) for f in synthetic_face_frames(10, (320, 240))]
        write_test_clip(path, frames, options=EncodeOptions(crf=crf, preset="ultrafast"))
        hits = sum(_found(locate_mosaics(fr.image), grid, fr.image.shape) for fr in read_frames(path))
        assert hits >= 9, f"crf {crf}: {hits}/10"


def test_one_mosaic_is_one_region():
    """A large mosaic crossed by a plain band of cells (no steps there) stays one region, and pieces of one
    grid found apart are merged."""
    from depixcli.locate.regions import merge_regions

    img = _scene(3)
    img[150:530, 400:760] = _face(360, 380)
    img[300:380, 400:760] = (128, 120, 110)
    grid = grid_from_block_size((400, 150, 760, 530), 20)
    regions = locate_mosaics(h264_roundtrip(apply_mosaic(img, grid), 23))
    assert len(regions) == 1 and box_iou(regions[0].rect, grid.rect) > 0.9
    top = MosaicRegion((400, 140, 760, 300), 20.0, 20.0, 400.0, 140.0, 0.9)
    bottom = MosaicRegion((400, 300, 760, 540), 20.1, 19.9, 400.3, 300.2, 0.8)
    other = MosaicRegion((760, 140, 900, 300), 12.0, 12.0, 760.0, 140.0, 0.9)  # touches, another grid
    merged = merge_regions([top, bottom, other])
    assert sorted(r.rect for r in merged) == [(400, 140, 760, 540), (760, 140, 900, 300)]


def test_stream_follows_known_mosaics_and_finds_one_that_appears_between_key_frames(monkeypatch):
    """locate_stream: the whole frame is searched on key frames only while the mosaic is followed; a second
    mosaic that appears between key frames is found from its first frame (followed back from the next key)."""
    import depixcli.locate.stream as locate  # the module whose locate_mosaics locate_stream calls
    from depixcli.locate.stream import KEY_EVERY, locate_stream

    whole = []
    monkeypatch.setattr(locate, "locate_mosaics", lambda f, c: whole.append(1) or locate_mosaics(f, c))

    base = _scene(2)
    n, late = 2 * KEY_EVERY + 2, KEY_EVERY // 2 + 1  # the second mosaic shows from frame `late` on
    frames, grids = [], []
    for t in range(n):
        img = base.copy()
        g = [grid_from_blocks((200 + 4 * t, 150, 360 + 4 * t, 350), 16)]
        img[150:350, 200 + 4 * t:360 + 4 * t] = _face(160, 200)
        if t >= late:
            g.append(grid_from_block_size((600, 240 - 2 * t, 760, 420 - 2 * t), 12))
            img[240 - 2 * t:420 - 2 * t, 600:760] = _face(160, 180)
        for grid in g:
            img = apply_mosaic(img, grid)
        frames.append(_jpeg(img))
        grids.append(g)
    out = list(locate_stream(range(n), lambda t: frames[t]))
    assert [t for t, _ in out] == list(range(n))
    for t, regions in out:
        assert len(regions) == len(grids[t]) and all(_found(regions, g, frames[t].shape) for g in grids[t]), t
    assert len(whole) <= len(range(0, n, KEY_EVERY)) + 1  # whole-frame searches: about the key frames only


def test_stream_follows_a_zooming_mosaic_over_frames_the_whole_frame_search_misses(monkeypatch):
    """locate_stream, issue 11: a face coming closer (block size +2.5 % a frame, face-anchored 8 x 8 grid);
    the whole-frame search misses the last two frames before a key frame and that key frame. Following the
    mosaic from the frame before (at its grown block size, not the key frame's) finds it on all of them."""
    import depixcli.locate.stream as locate  # the module whose locate_mosaics locate_stream calls
    from depixcli.locate.stream import KEY_EVERY, locate_stream

    blind = {KEY_EVERY - 2, KEY_EVERY - 1, KEY_EVERY}
    base = _scene(1)
    n = 2 * KEY_EVERY + 2
    frames, grids = [], []
    for t in range(n):
        s = 160 * 1.025 ** t
        box = tuple(int(round(v)) for v in (640 - s / 2, 360 - 0.6 * s, 640 + s / 2, 360 + 0.6 * s))
        img = base.copy()
        img[box[1]:box[3], box[0]:box[2]] = _face(box[2] - box[0], box[3] - box[1])
        grids.append(grid_from_blocks(box, 8))
        frames.append(_jpeg(apply_mosaic(img, grids[-1])))
    calls = []

    def whole(f, c):
        t = next(i for i, fr in enumerate(frames) if fr is f)
        calls.append(t)
        return [] if t in blind else locate_mosaics(f, c)

    monkeypatch.setattr(locate, "locate_mosaics", whole)
    out = list(locate_stream(range(n), lambda t: frames[t]))
    assert blind & set(calls)  # the whole-frame search did run (and miss) there
    for t, regions in out:
        assert len(regions) == 1 and _found(regions, grids[t], frames[t].shape), t


def test_an_axis_masked_by_a_texture_of_about_the_block_size_gets_its_period_from_the_other():
    """Issue 11 (a woven hat behind a small face, `--block-size 10`): the x difference profile of the area
    holds the mosaic's grid lines (every 10 px from 30 to 140) and, as strongly, strands spaced 9.5-13.5 px
    apart. The plain period search finds nothing on x; with the y axis's period (or the windows' hint) a
    lower bar keeps 10 px and its phase, and nothing when y has no period either."""
    from depixcli.locate.config import LocateConfig
    from depixcli.locate.periods import axis_periods, masked_axis, robust

    cfg = LocateConfig()
    rng = np.random.default_rng(0)
    pm = np.zeros(184)
    pm[np.arange(30, 141, 10) - 1] = 100.0  # pm[i]: the step between pixels i and i + 1
    strands = np.cumsum(rng.uniform(9.5, 13.5, 40)).astype(int)
    strands = strands[strands < pm.size]
    pm[strands] += rng.uniform(100, 150, strands.size)
    assert axis_periods(pm, 0, 10.7, cfg) == [] and axis_periods(robust(pm), 0, 10.7, cfg) == []
    found = masked_axis(pm, 0, 10.7, [(10.0, 90.0, 0.6)], cfg)
    assert any(p == pytest.approx(10.0, abs=0.05) and abs((o - 30.0) / p - round((o - 30.0) / p)) < 0.05
               for p, o, _ in found)
    assert masked_axis(pm, 0, 10.7, [], cfg) == []
    # neither the windows nor the other axis near 10 px: the strands' and the grid's periods are not taken
    assert not any(8 < p < 14 for p, _, _ in masked_axis(pm, 0, 20.0, [(20.0, 0.0, 0.6)], cfg))


def test_a_plain_wall_or_a_row_of_the_picture_beside_a_mosaic_is_not_taken_in():
    """A border row / column of cells needs grid-line steps along it or on its outer side: every plain area
    beside a mosaic has steps across the mosaic's side (a val clip's smooth wall beside a 10 px grid was taken
    in on 6 of 8 frames, and the paste changed it; here the row of the suit below the mosaic was)."""
    from tests.restore.test_edges import photo

    frames = []
    for k in range(4):
        img = photo(k)
        img[:, :100] = np.rint(np.linspace(186, 136, img.shape[0]))[:, None, None].astype(np.uint8)  # a wall
        frames.append(apply_mosaic(img, grid_from_block_size((100, 40, 220, 160), 10)))  # on the image's grid
    for f in h264_roundtrip(np.stack(frames), crf=18):
        (found,) = locate_mosaics(f)
        assert found.rect == (100, 40, 220, 160)
