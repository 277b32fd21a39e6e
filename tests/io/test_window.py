"""--start / --duration / --max-frames (video.TimeWindow) for `depix run` and `depix pixelate`: the part's
frames, timestamps from 0 and the audio under them, decoded back from the output files."""

import av
import numpy as np
import pytest
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.errors import InputError
from depixcli.io.codec import EncodeOptions
from depixcli.io.encode import VideoWriter
from depixcli.io.synthetic import write_test_clip
from depixcli.io.video import TimeWindow, probe, read_frames, window_info
from tests.test_pixelate import _frames

FPS = 25
N = 100  # frames: 4 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("win") / "face.mp4"
    write_test_clip(path, _frames(n=N), fps=FPS, audio=True)
    return path


def decoded(path):
    """(frames as (N, H, W, 3) uint8, video pts in s, first audio time in s, audio duration in s)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        tb = v.time_base
        frames = [(f.to_ndarray(format="rgb24"), float(f.pts * tb)) for f in c.decode(v)]
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        rate = a.sample_rate
        chunks = list(c.decode(a))
    audio_start = float(chunks[0].pts * chunks[0].time_base)
    return (np.stack([f for f, _ in frames]), [t for _, t in frames], audio_start,
            sum(ch.samples for ch in chunks) / rate)


def closest_source_frame(image, source, region):
    """Index of the source frame nearest to `image` inside `region` (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = region
    diffs = [np.abs(image[y0:y1, x0:x1].astype(int) - s[y0:y1, x0:x1].astype(int)).mean() for s in source]
    return int(np.argmin(diffs))


def test_read_frames_window_seeks_and_numbers_from_zero(clip):
    whole = list(read_frames(clip))
    part = list(read_frames(clip, TimeWindow(start_s=1.0, duration_s=0.5)))
    assert [f.index for f in part] == list(range(13))  # 1.0 s .. 1.48 s at 25 fps (end exclusive)
    assert [f.pts for f in part] == [f.pts for f in whole[25:38]]  # source pts
    assert all(np.array_equal(a.image, b.image) for a, b in zip(part, whole[25:38]))
    assert len(list(read_frames(clip, TimeWindow(start_s=2.0, max_frames=7)))) == 7
    assert len(list(read_frames(clip, TimeWindow(start_s=3.5)))) == N - 88  # 3.52 s (frames 0.04 s apart) on
    info = probe(clip)
    assert window_info(info, TimeWindow(start_s=1.0, duration_s=0.5)).frames == 13
    assert window_info(info, TimeWindow(start_s=3.5)).frames == N - 88
    with pytest.raises(InputError, match="past the end"):
        window_info(info, TimeWindow(start_s=4.0))


def test_writer_part_starts_at_zero_with_the_audio_under_the_frames(clip, tmp_path):
    window = TimeWindow(start_s=2.0, duration_s=1.0)
    out = tmp_path / "part.mp4"
    with VideoWriter(out, window_info(probe(clip), window), EncodeOptions(preset="ultrafast"), audio_from=clip,
                     part=True) as w:
        for f in read_frames(clip, window):
            w.write(f.image, f.pts)
    _, pts, audio_start, audio_s = decoded(out)
    assert len(pts) == 25 and pts[0] == 0.0 and pts[-1] == pytest.approx(24 / FPS)
    assert abs(audio_start) < 0.03 and audio_s == pytest.approx(1.0, abs=0.03)  # one AAC packet: 21 ms


def test_pixelate_start_duration(clip, tmp_path):
    out, side = tmp_path / "p.mp4", tmp_path / "p.json"
    res = CliRunner().invoke(main, ["pixelate", str(clip), "-o", str(out), "--boxes-out", str(side),
                                    "--start", "1.2", "--duration", "00:01.6", "-q"])
    assert res.exit_code == 0, res.output
    frames, pts, audio_start, audio_s = decoded(out)
    assert len(frames) == 40 and pts[0] == 0.0 and pts[-1] == pytest.approx(39 / FPS)
    assert abs(audio_start) < 0.03 and audio_s == pytest.approx(1.6, abs=0.03)
    source = [f.image for f in read_frames(clip)]
    # each output frame (mosaic and all) is nearest to the source frame 30 frames on
    # (the face moves 5 px per frame, so a neighbouring frame does not match)
    for k in (0, 17, 39):
        assert closest_source_frame(frames[k], source, (0, 240, 0, 320)) == k + 30
    import json

    data = json.loads(side.read_text())
    assert data["frame_count"] == 40 and data["frames"][0]["index"] == 0
    assert data["config"]["window"] == {"start_s": 1.2, "duration_s": 1.6, "max_frames": None}


def test_run_start_max_frames_region(clip, tmp_path, tiny_weights):
    out = tmp_path / "r.mp4"
    res = CliRunner().invoke(main, ["run", str(clip), "-o", str(out), "-w", str(tiny_weights), "--region",
                                    "40,40,150,160", "--start", "2", "--max-frames", "30", "-q"])
    assert res.exit_code == 0, res.output
    frames, pts, audio_start, audio_s = decoded(out)
    assert len(frames) == 30 and pts[0] == 0.0 and pts[-1] == pytest.approx(29 / FPS)
    assert abs(audio_start) < 0.03 and audio_s == pytest.approx(1.2, abs=0.03)
    source = [f.image for f in read_frames(clip)]
    assert closest_source_frame(frames[0], source, (200, 240, 0, 320)) == 50


def test_run_without_mosaic_reencodes_only_the_part(clip, tmp_path, tiny_weights):
    out = tmp_path / "c.mp4"
    res = CliRunner().invoke(main, ["run", str(clip), "-o", str(out), "-w", str(tiny_weights),
                                    "--start", "3", "-q"])
    assert res.exit_code == 0, res.output
    frames, pts, _, audio_s = decoded(out)
    assert len(frames) == 25 and pts[0] == 0.0 and audio_s == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("args, message", [
    (["--start", "5"], "past the end"),
    (["--start", "-1"], "time >= 0"),
    (["--start", "1:75"], "[HH:]MM:SS"),
    (["--duration", "0"], "must be > 0"),
    (["--max-frames", "0"], "0"),
])
def test_bad_windows_are_one_line_errors(clip, tmp_path, args, message):
    out = tmp_path / "x.mp4"
    res = CliRunner().invoke(main, ["pixelate", str(clip), "-o", str(out), "-q", *args])
    assert res.exit_code in (1, 2) and message in res.output and "Traceback" not in res.output, res.output
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_run_boxes_with_start_is_a_usage_error(clip, tmp_path):
    res = CliRunner().invoke(main, ["run", str(clip), "-o", str(tmp_path / "x.mp4"), "--boxes",
                                    str(tmp_path / "b.json"), "--start", "1"])
    assert res.exit_code == 2 and "--boxes with --start" in res.output
