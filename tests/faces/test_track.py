import numpy as np
import pytest

from depixcli.faces.detect import Detection
from depixcli.faces.track import TrackConfig, build_tracks, smooth_boxes


def box(cx, cy, s=40.0):
    return np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2])


def test_identity_kept_through_gap_and_gap_filled_linearly():
    per_frame = [[Detection(box(100 + 3 * t, 80), 0.9)] for t in range(30)]
    for t in range(10, 16):  # 6 missed frames
        per_frame[t] = []
    tracks = build_tracks(per_frame, TrackConfig(sigma=0))
    assert len(tracks) == 1
    tr = tracks[0]
    assert list(tr.frames) == list(range(30))
    assert tr.filled.sum() == 6 and tr.filled[10:16].all()
    np.testing.assert_allclose(tr.box_at(12), box(100 + 3 * 12, 80), atol=1e-9)
    assert tr.box_at(30) is None and tr.box_at(-1) is None


def test_gap_longer_than_max_gap_splits_track():
    per_frame = [[box(100, 80)] for _ in range(40)]
    for t in range(10, 25):
        per_frame[t] = []
    tracks = build_tracks(per_frame, TrackConfig(max_gap=5))
    assert [(t.frames[0], t.frames[-1]) for t in tracks] == [(0, 9), (25, 39)]
    assert [t.id for t in tracks] == [0, 1]


def test_smoothing_reduces_jitter_of_still_face():
    rng = np.random.default_rng(0)
    truth = box(200, 150, 80)
    raw = [truth + rng.normal(0, 3.0, 4) for _ in range(60)]
    tr = build_tracks([[b] for b in raw])[0]
    raw_err = np.abs(np.stack(raw) - truth).mean()
    smooth_err = np.abs(tr.boxes - truth).mean()
    raw_step = np.abs(np.diff(np.stack(raw), axis=0)).mean()
    smooth_step = np.abs(np.diff(tr.boxes, axis=0)).mean()
    assert smooth_err < 0.6 * raw_err
    assert smooth_step < 0.4 * raw_step


def test_smoothing_keeps_linear_motion_and_short_tracks():
    b = np.stack([box(10 + 2 * t, 50 + t) for t in range(20)])
    np.testing.assert_allclose(smooth_boxes(b, 1.5), b, atol=1e-9)  # no lag at the ends either
    two = b[:2]
    assert smooth_boxes(two, 1.5).shape == (2, 4)


def test_two_faces_crossing_keep_their_ids():
    per_frame = []
    for t in range(40):
        a = box(50 + 10 * t, 100, 50)  # left to right
        b = box(440 - 10 * t, 110, 50)  # right to left, crossing around t = 19
        per_frame.append([Detection(b, 0.9), Detection(a, 0.95)])
    tracks = build_tracks(per_frame, TrackConfig(sigma=0))
    assert len(tracks) == 2
    for tr in tracks:
        cx = (tr.boxes[:, 0] + tr.boxes[:, 2]) / 2
        steps = np.diff(cx)
        assert np.all(steps > 0) or np.all(steps < 0)  # no identity swap: monotonic motion
        assert len(tr) == 40


def test_several_faces_and_blips():
    per_frame = [[box(100, 100), box(300, 100)] for _ in range(20)]
    per_frame[7].append(np.array([*box(500, 300, 20), 0.5]))  # low-score one-frame blip
    per_frame[9].append(np.array([*box(500, 50, 20), 0.95]))  # confident one-frame face
    tracks = build_tracks(per_frame)
    assert len(tracks) == 3
    assert sorted(len(t) for t in tracks) == [1, 20, 20]
    assert len(build_tracks(per_frame, TrackConfig(min_length=8))) == 2


@pytest.mark.parametrize("n_frames", [0, 5])
def test_no_detections(n_frames):
    assert build_tracks([[] for _ in range(n_frames)]) == []
