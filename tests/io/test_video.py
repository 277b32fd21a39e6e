"""Video I/O: real files written, decoded back and checked (frame count, fps, pts, audio, errors)."""

import os
import subprocess
import sys
import warnings
from dataclasses import replace
from fractions import Fraction

import av
import numpy as np
import pytest

import depixcli
from depixcli.errors import ConfigError, DepixWarning, InputError, OutputError
from depixcli.evaluate.metrics import psnr
from depixcli.io.codec import EncodeOptions
from depixcli.io.encode import VideoWriter
from depixcli.io.synthetic import make_synthetic_clip, synthetic_face_frames, write_test_clip
from depixcli.io.video import check_paths, probe, read_frames

SIZE = (96, 64)  # (w, h) px: small keeps the file fast


FAST = EncodeOptions(preset="ultrafast")


def _copy(src, dst, options=FAST, audio=True):
    """Decode `src` and re-encode every frame into `dst` with its pts."""
    info = probe(src)
    with VideoWriter(dst, info, options, audio_from=src if audio else None) as writer:
        for frame in read_frames(src):
            writer.write(frame.image, frame.pts)
    return probe(dst)


def _packets(path, kind):
    with av.open(path) as container:
        stream = getattr(container.streams, kind)[0]
        return [bytes(p) for p in container.demux(stream) if p.size]


def assert_timing_and_audio_kept(src, out):
    """`out` keeps the frame timestamps of `src` and its audio packets, bit for bit (stream copy)."""
    assert [f.pts for f in read_frames(out)] == [f.pts for f in read_frames(src)]
    audio = _packets(src, "audio")
    assert audio and _packets(out, "audio") == audio


def _leftovers(directory):
    return sorted(name for name in os.listdir(directory) if ".depix-tmp-" in name)


def test_probe_describes_synthetic_clip(tmp_path):
    info = make_synthetic_clip(tmp_path / "a.mp4", 12, SIZE, fps=25, audio=True)
    assert (info.width, info.height) == SIZE
    assert info.fps == 25 and info.frames == 12
    assert info.duration_s == pytest.approx(12 / 25, abs=0.01)
    assert info.rotation == 0 and info.has_audio and info.audio_codec == "aac"
    assert info.video_codec == "h264"


@pytest.mark.parametrize(("size", "fps", "ext"), [
    ((96, 64), 25, ".mp4"),
    ((97, 63), 25, ".mp4"),  # odd sides: encoded yuv444p, size kept
    ((96, 64), Fraction(30000, 1001), ".mkv"),
])
def test_round_trip_keeps_frames_fps_pts_and_size(tmp_path, size, fps, ext):
    src = tmp_path / "src.mp4"
    make_synthetic_clip(src, 15, size, fps=fps)
    out = _copy(src, tmp_path / f"out{ext}", options=FAST)
    assert (out.width, out.height) == size
    assert out.fps == fps
    before, after = list(read_frames(src)), list(read_frames(out.path))
    assert len(after) == len(before) == 15
    assert [f.time for f in after] == pytest.approx([f.time for f in before], abs=1e-3)
    if ext == ".mp4":  # same container: the same time base and the very same pts
        assert out.time_base == probe(src).time_base
        assert [f.pts for f in after] == [f.pts for f in before]
    assert all(f.image.shape == (size[1], size[0], 3) and f.image.dtype == np.uint8 for f in after)
    with av.open(out.path) as container:
        assert container.streams.video[0].format.name == ("yuv444p" if size[0] % 2 else "yuv420p")
    assert min(psnr(a.image, b.image, "rgb") for a, b in zip(before, after, strict=True)) > 35


def test_pts_derived_from_index_when_not_given(tmp_path):
    info = make_synthetic_clip(tmp_path / "src.mp4", 6, SIZE, fps=10)
    with VideoWriter(tmp_path / "out.mp4", info, FAST) as writer:
        for image in synthetic_face_frames(6, SIZE, fps=10):
            writer.write(image)
    assert [f.time for f in read_frames(tmp_path / "out.mp4")] == pytest.approx([i / 10 for i in range(6)])


def test_audio_is_stream_copied_when_container_accepts_it(tmp_path):
    src = tmp_path / "src.mp4"
    make_synthetic_clip(src, 25, SIZE, audio=True)  # AAC
    out = _copy(src, tmp_path / "out.mkv")
    assert out.has_audio and out.audio_codec == "aac"
    assert _packets(out.path, "audio") == _packets(src, "audio")  # bit-identical: no re-encode


def test_audio_is_reencoded_to_aac_when_container_refuses_codec(tmp_path):
    src = tmp_path / "src.mov"
    make_synthetic_clip(src, 25, SIZE, audio=True, audio_codec="pcm_mulaw")  # mp4 cannot hold mu-law
    assert probe(src).audio_codec == "pcm_mulaw"
    out = _copy(src, tmp_path / "out.mp4")
    assert out.audio_codec == "aac"
    with av.open(out.path) as container:
        stream = container.streams.audio[0]
        audio_s = float(stream.duration * stream.time_base)
    assert audio_s == pytest.approx(1.0, abs=0.1)  # 25 frames at 25 fps


def test_crf_controls_size_and_quality(tmp_path):
    src = tmp_path / "src.mp4"
    make_synthetic_clip(src, 10, (128, 96), options=EncodeOptions(crf=0, preset="ultrafast"))
    results = {}
    for crf in (12, 36):
        out = _copy(src, tmp_path / f"crf{crf}.mp4", options=EncodeOptions(crf=crf, preset="veryfast"))
        frames = zip(read_frames(src), read_frames(out.path), strict=True)
        results[crf] = (os.path.getsize(out.path), np.mean([psnr(a.image, b.image, "rgb") for a, b in frames]))
    assert results[12][0] > 3 * results[36][0]
    assert results[12][1] > results[36][1] + 6


@pytest.mark.filterwarnings("ignore::depixcli.errors.DepixWarning")  # yuv444p source -> mpeg4's yuv420p
def test_other_codec_with_quality_mapping(tmp_path):
    src = tmp_path / "src.mp4"
    make_synthetic_clip(src, 10, (97, 63))  # odd sides: mpeg4 has no yuv444p, its 4:2:0 keeps them
    fine = _copy(src, tmp_path / "fine.mp4", options=EncodeOptions(codec="mpeg4", crf=18))
    coarse = _copy(src, tmp_path / "coarse.mp4", options=EncodeOptions(codec="mpeg4", crf=40))
    assert fine.video_codec == coarse.video_codec == "mpeg4"
    assert fine.frames == 10 and (fine.width, fine.height) == (97, 63)
    assert os.path.getsize(fine.path) > 1.5 * os.path.getsize(coarse.path)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation):
    path = tmp_path / "rot.mp4"
    upright = list(synthetic_face_frames(4, SIZE))
    info = write_test_clip(path, upright, rotation=rotation)
    assert info.rotation == rotation
    assert (info.width, info.height) == SIZE
    with av.open(str(path)) as container:  # stored turned: a reader ignoring the matrix sees this
        stored = container.streams.video[0]
        assert (stored.width, stored.height) == (SIZE if rotation == 180 else SIZE[::-1])
    frames = list(read_frames(path))
    assert all(psnr(f.image, ref, "rgb") > 28 for f, ref in zip(frames, upright, strict=True))  # a wrong turn: ~15 dB
    out = _copy(path, tmp_path / "out.mp4", audio=False)  # written upright, no display matrix
    assert out.rotation == 0 and (out.width, out.height) == SIZE


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_exception_in_writer_leaves_no_output(tmp_path, interrupt):
    info = make_synthetic_clip(tmp_path / "src.mp4", 5, SIZE, audio=True)
    out = tmp_path / "out.mp4"
    with pytest.raises(interrupt):
        with VideoWriter(out, info, FAST, audio_from=tmp_path / "src.mp4") as w:
            for image in synthetic_face_frames(3, SIZE):
                w.write(image)
            assert _leftovers(tmp_path)  # the temp file exists while writing
            raise interrupt()
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_previous_output(tmp_path):
    info = make_synthetic_clip(tmp_path / "src.mp4", 5, SIZE)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(out, info, FAST) as writer:
            writer.write(np.zeros((SIZE[1], SIZE[0], 3), np.float32))
    assert out.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == []


def test_successful_write_renames_and_cleans_up(tmp_path):
    info = make_synthetic_clip(tmp_path / "src.mp4", 5, SIZE)
    out = _copy(tmp_path / "src.mp4", tmp_path / "out.mp4")
    assert out.frames == 5 and not out.has_audio
    assert _leftovers(tmp_path) == []
    assert os.stat(out.path).st_mode & 0o644 == 0o644  # not mkstemp's 0600
    with pytest.raises(OutputError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", info):
            pass
    assert not (tmp_path / "empty.mp4").exists() and _leftovers(tmp_path) == []


def test_writer_rejects_bad_settings(tmp_path):
    info = make_synthetic_clip(tmp_path / "src.mp4", 3, SIZE)
    with pytest.raises(ConfigError, match="crf"):
        EncodeOptions(crf=60)
    with pytest.raises(ConfigError, match="preset"):
        EncodeOptions(preset="warp")
    with pytest.raises(ConfigError, match="at least 64 px"):  # libx265 would corrupt the heap
        with VideoWriter(tmp_path / "o.mp4", replace(info, width=48, height=32), EncodeOptions(codec="libx265")):
            pass
    with pytest.raises(ConfigError, match="nosuchcodec"):
        with VideoWriter(tmp_path / "o.mp4", info, EncodeOptions(codec="nosuchcodec")):
            pass
    with pytest.raises(OutputError, match="container"):
        with VideoWriter(tmp_path / "o.notaformat", info):
            pass
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["src.mp4"]


def test_check_paths(tmp_path, monkeypatch):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"x")
    check_paths(src, tmp_path / "out.mp4")  # fine: nothing raised
    (tmp_path / "link.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    for same in (src, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "in.mp4"):
        with pytest.raises(OutputError, match="overwrite the input"):
            check_paths(src, same)
    with pytest.raises(OutputError, match="does not exist"):
        check_paths(src, tmp_path / "missing" / "out.mp4")
    with pytest.raises(OutputError, match="is a directory"):
        check_paths(src, tmp_path)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # tests run as root: chmod won't do
    with pytest.raises(OutputError, match="not writable"):
        check_paths(src, tmp_path / "out.mp4")


def _audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _bad_inputs(tmp_path):
    good = tmp_path / "good.mp4"
    make_synthetic_clip(good, 20, SIZE)
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    faststart = tmp_path / "faststart.mp4"
    with av.open(str(good)) as src, av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.size:
                packet.stream = stream
                dst.mux(packet)
    data = faststart.read_bytes()
    (tmp_path / "cut_faststart.mp4").write_bytes(data[: len(data) * 2 // 3])  # index intact, data cut
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    _audio_only(tmp_path / "audio.m4a")
    return {
        "missing.mp4": "no such file",
        "cut.mp4": "not a readable video",
        "cut_faststart.mp4": "truncated",
        "text.mp4": "not a readable video",
        "audio.m4a": "no video stream",
    }


def test_bad_inputs_raise_one_line_input_error(tmp_path):
    for name, reason in _bad_inputs(tmp_path).items():
        path = str(tmp_path / name)
        for attempt in (probe, lambda p: next(read_frames(p))):
            with pytest.raises(InputError) as caught:
                attempt(path)
            message = str(caught.value)
            assert path in message and reason in message and "\n" not in message
    with pytest.raises(InputError, match="is a directory"):
        probe(tmp_path)


def test_corrupt_data_mid_stream_raises_input_error(tmp_path):
    path = tmp_path / "garbled.mp4"
    make_synthetic_clip(path, 20, SIZE)
    data = bytearray(path.read_bytes())
    start, stop = int(len(data) * 0.4), int(len(data) * 0.6)  # inside the frame data (moov is at the end)
    data[start:stop] = np.random.default_rng(0).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert probe(path).frames == 20  # header and first frame are fine
    decoded = []
    with pytest.raises(InputError, match="corrupt video data after frame") as caught:
        for frame in read_frames(path):
            decoded.append(frame.index)
    assert decoded and str(path) in str(caught.value)


def test_synthetic_clip_is_deterministic_and_moving():
    a = list(synthetic_face_frames(10, SIZE))
    b = list(synthetic_face_frames(10, SIZE))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.abs(a[0].astype(int) - a[1].astype(int)).mean() > 0.05  # sub-pixel motion changes pixels
    assert np.abs(a[0].astype(int) - a[9].astype(int)).mean() > 1


# ---------------------------------------------------------------- pixel formats (10-bit, 4:2:2, 4:4:4)


def _stream_format(path):
    with av.open(os.fspath(path)) as c:
        return c.streams.video[0].codec_context.pix_fmt


@pytest.mark.parametrize("source", ["yuv444p", "yuv422p10le", "yuv444p10le", "yuv420p10le", "yuv420p"])
def test_writer_keeps_the_source_pixel_format(tmp_path, source):
    src = tmp_path / "src.mp4"
    write_test_clip(src, synthetic_face_frames(3, SIZE), options=EncodeOptions(preset="ultrafast", pix_fmt=source))
    assert probe(src).pix_fmt == source
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _copy(src, tmp_path / "out.mp4", audio=False)
    assert _stream_format(tmp_path / "out.mp4") == source  # was yuv420p for every source
    notes = [str(w.message) for w in record if issubclass(w.category, DepixWarning)]
    assert notes == ([f"{src}: {source} source: written as {source}, with 8-bit precision (depix works on 8-bit RGB)"]
                     if "10le" in source else [])


def test_writer_says_when_the_encoder_lacks_the_source_format(tmp_path):
    src = tmp_path / "src.mp4"
    write_test_clip(src, synthetic_face_frames(3, SIZE), options=EncodeOptions(preset="ultrafast", pix_fmt="yuv444p"))
    with pytest.warns(DepixWarning, match="mpeg4 cannot write yuv444p here: encoded as yuv420p"):
        _copy(src, tmp_path / "out.mp4", replace(FAST, codec="mpeg4"), audio=False)
    assert _stream_format(tmp_path / "out.mp4") == "yuv420p"


def test_cli_keeps_10_bit_444_and_warns_in_one_line(tmp_path):
    from click.testing import CliRunner

    from depixcli.cli import main

    src = tmp_path / "src.mp4"
    ten_bit_444 = EncodeOptions(preset="ultrafast", pix_fmt="yuv444p10le")
    write_test_clip(src, synthetic_face_frames(3, SIZE), options=ten_bit_444)
    r = CliRunner().invoke(main, ["pixelate", str(src), "-o", str(tmp_path / "a.mp4"), "-q", "--preset", "ultrafast"])
    assert r.exit_code == 0, r.output
    assert _stream_format(tmp_path / "a.mp4") == "yuv444p10le"
    assert "Warning: " in r.output and "8-bit precision" in r.output
    r = CliRunner().invoke(main, ["pixelate", str(src), "-o", str(tmp_path / "b.mp4"), "-q", "--codec", "mpeg4"])
    assert r.exit_code == 0, r.output
    assert _stream_format(tmp_path / "b.mp4") == "yuv420p"
    assert "Warning: " in r.output and "mpeg4 cannot write yuv444p10le here: encoded as yuv420p" in r.output


ENCODE_TWICE = """
import hashlib, sys
from fractions import Fraction
import numpy as np
from depixcli.io.encode import VideoWriter
from depixcli.io.video import VideoInfo
frames = np.load(sys.argv[1])
like = VideoInfo(path="frames", width=frames.shape[2], height=frames.shape[1], fps=Fraction(25),
                 time_base=Fraction(1, 12800), frames=len(frames), duration_s=len(frames) / 25, rotation=0,
                 has_audio=False, video_codec="h264", audio_codec=None, pix_fmt="yuv420p")
digests = []
for k in range(2):
    out = f"{sys.argv[2]}_{k}.mp4"
    with VideoWriter(out, like) as w:
        for i, image in enumerate(frames):
            w.write(image, 512 * i)
    digests.append(hashlib.sha256(open(out, "rb").read()).hexdigest())
print(" ".join(digests))
"""


def test_same_frames_encode_to_the_same_bytes_whatever_the_heap_holds(tmp_path, astronaut):
    """Issue 17: x264's macroblock tree read uninitialised heap memory on panning real content, so repeated
    encodes in one process, and encodes in processes with other histories, wrote different bytes. glibc's
    MALLOC_PERTURB_ fills fresh heap memory with a chosen byte: two values stand for two histories."""
    frames = np.stack([astronaut[20 + i:180 + i, 40 + 3 * i:200 + 3 * i] for i in range(24)])  # 160 px, panning
    np.save(tmp_path / "frames.npy", frames)
    root = os.path.dirname(os.path.dirname(os.path.abspath(depixcli.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    digests = []
    for perturb in ("85", "170"):
        done = subprocess.run([sys.executable, "-c", ENCODE_TWICE, str(tmp_path / "frames.npy"),
                               str(tmp_path / f"out{perturb}")], env={**env, "MALLOC_PERTURB_": perturb},
                              capture_output=True, text=True, timeout=120, check=True)
        digests += done.stdout.split()
    assert len(digests) == 4 and len(set(digests)) == 1
