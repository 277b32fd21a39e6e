"""Streaming video I/O on PyAV: probe, frame reader, atomic writer with audio pass-through.

Conventions:
- Frames are `(H, W, 3)` uint8 RGB, already turned upright (display-matrix rotation applied).
- Timestamps (`pts`) are integers in the input stream's `time_base`; the writer keeps them.
- Nothing here holds more than one decoded frame (plus the encoder's own look-ahead).
- Library errors: `InputError` for anything wrong with an input file, `OutputError` for the output.

Colour: the reader converts with the input's tagged matrix and range (BT.601 when untagged, as
ffmpeg does); the writer converts RGB with BT.709, limited range, and tags the stream so.

Pixel format: the writer keeps the source's chroma sampling (4:2:0, 4:2:2, 4:4:4) and bit depth (8, 10,
12) when the encoder has that format (`output_pix_fmt`), else takes the closest one it has and says so
(a `DepixWarning`). Frames pass through depix as 8-bit RGB, so a 10-bit source keeps its format but is
written with 8-bit precision; that is said too.

Odd frame sizes: x264/x265 4:2:0 needs even width and height (H.264 crops in 2-px units there), so
odd-sized frames are encoded as yuv444p when the encoder has it, which keeps the exact size with
no padding; such files play in ffmpeg/VLC/mpv, not in every browser. mpeg4 handles odd 4:2:0 itself.

Audio is muxed in the same pass as the video: after each frame, the source's audio packets up to
that time (+ AUDIO_LEAD_S) are copied (or re-encoded), and the muxer interleaves by dts.

Parts (`TimeWindow`: --start, --duration, --max-frames): `read_frames(path, window)` seeks to the
start and yields only the part's frames, numbered from 0 and with their source pts; `window_info`
describes the part; `VideoWriter(..., part=True)` moves the timestamps so the first frame written is
at 0 and keeps only the audio under the written frames, moved by the same amount (A/V sync kept).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from depixcli.errors import ConfigError, DepixWarning, InputError, OutputError

CRF_RANGE = (0, 51)  # x264/x265 constant rate factor: 0 lossless .. 51 worst
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
CRF_QSCALE_REF = 18  # crf that maps to MPEG-4 qscale 2 (visually lossless)
CRF_PER_QSCALE_DOUBLING = 6  # +6 crf ~ half the bitrate, as doubling qscale
QSCALE_RANGE = (1, 31)  # MPEG-4 / MPEG-2 quantiser scale
FF_QP2LAMBDA = 118  # libavcodec: lambda per qscale unit
X265_MIN_SIDE = 64  # px; libx265 4.x corrupts the heap on smaller frames (seen at 34x22, 34x34)
AUDIO_LEAD_S = 0.5  # s of audio muxed ahead of the current video time while writing
AAC_BITRATE = 192_000  # bit/s when the audio has to be re-encoded
TMP_TAG = ".depix-tmp-"  # temp output: .<name><TMP_TAG><random><ext>, next to the target
BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709
RANGE_JPEG = 2  # AVCOL_RANGE_JPEG (full range)
RANGE_MPEG = 1  # AVCOL_RANGE_MPEG (limited, 16-235)
TIME_EPS_S = 1e-6  # s, timestamps this close count as equal (a frame exactly at --start is kept)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # px, as displayed (rotation applied)
    height: int  # px, as displayed
    fps: Fraction  # frames per second
    time_base: Fraction  # s per pts unit of the video stream
    frames: int  # exact when the container stores it, else duration * fps
    duration_s: float  # s
    rotation: int  # degrees clockwise the stored frames are turned for display: 0, 90, 180, 270
    has_audio: bool
    video_codec: str
    audio_codec: str | None
    pix_fmt: str = "yuv420p"  # decoded pixel format of the source (yuv420p10le, yuv444p, ...)


@dataclass(frozen=True)
class TimeWindow:
    """A part of a video: the frames from `start_s` (s after the first frame) on, at most `duration_s`
    seconds and at most `max_frames` frames of them (None: no such limit)."""

    start_s: float = 0.0
    duration_s: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if not self.start_s >= 0 or not math.isfinite(self.start_s):
            raise ConfigError(f"start must be a time >= 0 s, got {self.start_s}")
        if self.duration_s is not None and not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ConfigError(f"duration must be > 0 s, got {self.duration_s}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}")

    def takes(self, rel_s: float, count: int) -> int:
        """-1: a frame at `rel_s` (s after the video's first frame) comes before the part; 0: it is in the
        part (`count` frames of the part already taken); 1: the part is over."""
        if rel_s < self.start_s - TIME_EPS_S:
            return -1
        if self.duration_s is not None and rel_s >= self.start_s + self.duration_s - TIME_EPS_S:
            return 1
        return 1 if self.max_frames is not None and count >= self.max_frames else 0

    def describe(self) -> str:
        parts = [f"from {self.start_s:g} s"]
        if self.duration_s is not None:
            parts.append(f"for {self.duration_s:g} s")
        if self.max_frames is not None:
            parts.append(f"at most {self.max_frames} frames")
        return " ".join(parts)


@dataclass(frozen=True)
class Frame:
    index: int  # 0-based decode order of output frames
    image: np.ndarray  # (H, W, 3) uint8 RGB, upright
    pts: int | None  # in VideoInfo.time_base units
    time: float  # s (pts * time_base, or index / fps when pts is missing)


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "libx264"  # libx264, libx265, libvpx-vp9 (crf); mpeg4, mpeg2video (qscale)
    crf: int = 18  # constant rate factor; mapped to a qscale for MPEG-4-style encoders
    preset: str = "medium"  # x264/x265 speed preset
    pix_fmt: str | None = None  # None: the source's (`output_pix_fmt`)
    colour: tuple[int, int, int, int] | None = None  # (colorspace, primaries, trc, range) tags; None: BT.709 limited

    def __post_init__(self) -> None:
        if not CRF_RANGE[0] <= self.crf <= CRF_RANGE[1]:
            raise ConfigError(f"crf must be in {CRF_RANGE[0]}..{CRF_RANGE[1]}, got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(X264_PRESETS)}, got {self.preset!r}")


# --------------------------------------------------------------------------------------------- input


def _reason(exc: BaseException) -> str:
    """One-line reason from an av/OS error."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _open_input(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a video file")
    try:
        return av.open(path, "r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video file ({_reason(exc)})") from None


def _video_stream(container: av.container.InputContainer, path: str) -> av.VideoStream:
    if not container.streams.video:
        raise InputError(f"{path}: no video stream")
    return container.streams.video[0]


def _check_complete(stream: av.VideoStream, path: str) -> None:
    """Raise if the container's own index points past the end of the file (truncated copy).

    A cut mp4/mov with its index up front demuxes without error and just stops early.
    """
    entries = stream.index_entries
    if len(entries):
        last = entries[len(entries) - 1]
        if last.pos >= 0 and last.pos + last.size > os.path.getsize(path):
            raise InputError(f"{path}: truncated file (its index points past the end of the data)")


def _frame_rate(stream: av.VideoStream, path: str) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    raise InputError(f"{path}: unknown frame rate")


def _upright_rgb(frame: av.VideoFrame) -> tuple[np.ndarray, int]:
    """Decoded frame -> ((H, W, 3) uint8 RGB upright, clockwise display rotation in degrees)."""
    image = frame.to_ndarray(format="rgb24", src_color_range=frame.color_range or None)
    quarter_turns_ccw = round(frame.rotation / 90) % 4  # frame.rotation: counter-clockwise degrees
    if quarter_turns_ccw:
        image = np.ascontiguousarray(np.rot90(image, quarter_turns_ccw))
    return image, (-90 * quarter_turns_ccw) % 360


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file; decodes its first frame to check it is readable and read rotation."""
    path = os.fspath(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        _check_complete(stream, path)
        fps = _frame_rate(stream, path)
        time_base = Fraction(stream.time_base) if stream.time_base else 1 / fps
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: corrupt video data ({_reason(exc)})") from None
        if first is None:
            raise InputError(f"{path}: no decodable video frames (truncated or corrupt)")
        image, rotation = _upright_rgb(first)
        if stream.duration:
            duration_s = float(stream.duration * time_base)
        elif container.duration:
            duration_s = container.duration / av.time_base
        else:
            duration_s = 0.0
        frames = stream.frames if stream.frames > 0 else max(1, round(duration_s * fps))
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            path=path, width=image.shape[1], height=image.shape[0], fps=fps, time_base=time_base,
            frames=frames, duration_s=duration_s, rotation=rotation, has_audio=audio is not None,
            video_codec=stream.codec_context.name, pix_fmt=first.format.name,
            audio_codec=audio.codec_context.name if audio is not None else None,
        )


def window_info(info: VideoInfo, window: TimeWindow | None) -> VideoInfo:
    """`info` of the part `window` of the video (frames and duration expected); InputError when the part
    starts at or after the end."""
    if window is None:
        return info
    if info.duration_s > 0 and window.start_s >= info.duration_s - TIME_EPS_S:
        raise InputError(f"{info.path}: starts at {window.start_s:g} s, at or past the end of the video "
                         f"({info.duration_s:.3f} s)")
    duration = max(info.duration_s - window.start_s, 0.0) if info.duration_s > 0 else math.inf
    if window.duration_s is not None:
        duration = min(duration, window.duration_s)
    frames = info.frames - math.ceil(window.start_s * info.fps - TIME_EPS_S)
    if math.isfinite(duration):
        frames = min(frames, math.ceil(duration * info.fps - TIME_EPS_S))
    if window.max_frames is not None:
        frames = min(frames, window.max_frames)
    frames = max(frames, 1)
    return dataclasses.replace(info, frames=frames, duration_s=min(duration, frames / float(info.fps)))


def read_frames(path: str | os.PathLike, window: TimeWindow | None = None) -> Iterator[Frame]:
    """Decode the first video stream frame by frame: RGB uint8, upright, with pts.

    `window`: only the frames of that part (after a seek to its start), numbered from 0, with their
    source pts and times. Decoding errors part-way (corrupt or truncated data) raise InputError.
    """
    path = os.fspath(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        _check_complete(stream, path)
        stream.thread_type = "AUTO"  # frame + slice threads: ~2x faster decode on 2 cores
        fps = _frame_rate(stream, path)
        time_base = Fraction(stream.time_base) if stream.time_base else 1 / fps
        first_pts = stream.start_time or 0  # the video's time 0 for `window`
        if window is not None and window.start_s > 0:
            with contextlib.suppress(av.error.FFmpegError):  # unseekable: decode from the start, skip frames
                container.seek(first_pts + int(window.start_s / time_base), stream=stream, backward=True)
        index = decoded_count = 0
        decoded = container.decode(stream)
        while True:
            try:
                av_frame = next(decoded, None)
            except av.error.FFmpegError as exc:
                raise InputError(f"{path}: corrupt video data after frame {index} ({_reason(exc)})") from None
            if av_frame is None:
                return
            decoded_count += 1
            if window is not None:
                rel = (float((av_frame.pts - first_pts) * time_base) if av_frame.pts is not None
                       else (decoded_count - 1) / float(fps))
                where = window.takes(rel, index)
                if where < 0:
                    continue
                if where > 0:
                    return
            image, _ = _upright_rgb(av_frame)
            pts = av_frame.pts
            time = float(pts * time_base) if pts is not None else index / float(fps)
            yield Frame(index, image, pts, time)
            index += 1


# -------------------------------------------------------------------------------------------- output


def check_paths(in_path: str | os.PathLike, out_path: str | os.PathLike) -> None:
    """Refuse an output that is the input (also through links) or that cannot be written."""
    in_path, out_path = os.fspath(in_path), os.fspath(out_path)
    if os.path.isdir(out_path):
        raise OutputError(f"{out_path}: is a directory; give an output file name")
    if os.path.exists(out_path) and os.path.exists(in_path):
        same = os.path.samefile(in_path, out_path)
    else:
        same = os.path.realpath(in_path) == os.path.realpath(out_path)
    if same:
        raise OutputError(f"{out_path}: refusing to overwrite the input {in_path}")
    directory = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(directory):
        raise OutputError(f"{out_path}: output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"{out_path}: output directory {directory} is not writable")


CHROMA_RANK = {"420": 0, "422": 1, "440": 1, "444": 2}  # chroma resolution, for "lower than the source"


def _sampling_depth(pix_fmt: str) -> tuple[str, int]:
    """("420" | "422" | "440" | "444", bits per component) of a pixel format; RGB and grey count as
    4:4:4 and 4:2:0 (grey has no chroma to keep)."""
    try:
        f = av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        return "420", 8
    depth = max((c.bits for c in f.components), default=8)
    if f.is_rgb or f.has_palette:
        return "444", min(depth, 12)
    if len(f.components) < 3:
        return "420", depth
    sampling = {(2, 2): "444", (1, 2): "422", (2, 1): "440", (1, 1): "420"}
    return sampling.get((f.chroma_width(2), f.chroma_height(2)), "420"), depth


def _yuv(sampling: str, depth: int) -> str:
    return f"yuv{sampling}p" + (f"{depth}le" if depth > 8 else "")


def output_pix_fmt(source: str, codec: av.codec.Codec, width: int, height: int) -> tuple[str, str | None]:
    """The pixel format to encode a `source`-format video with `codec`, and a note when it is not the
    source's sampling and depth (None when it is).

    Prefers the source's chroma sampling, then its bit depth, then 8-bit; more chroma (4:4:4) is taken
    when odd sides rule out subsampling. A format the encoder lacks is never chosen.
    """
    formats = {f.name for f in codec.video_formats or ()}
    sampling, depth = _sampling_depth(source)
    depths = [d for d in (12, 10, 8) if d <= max(depth, 8)]
    samplings = [sampling] + [x for x in ("444", "422", "420") if x != sampling]
    candidates = [_yuv(sp, d) for sp in samplings for d in depths]
    supported = [c for c in candidates if c in formats] or ["yuv420p"]

    def fits(name: str) -> bool:  # subsampled chroma needs even sides (x264/x265 crop otherwise)
        sp = _sampling_depth(name)[0]
        return not ((width % 2 and sp in ("420", "422")) or (height % 2 and sp in ("420", "440")))

    chosen = next((c for c in supported if fits(c)), supported[0])
    got_sampling, got_depth = _sampling_depth(chosen)
    if CHROMA_RANK[got_sampling] >= CHROMA_RANK[sampling] and got_depth >= depth:
        return chosen, None
    return chosen, f"{codec.name} cannot write {source} here: encoded as {chosen}"


def _pix_fmt(options: EncodeOptions, codec: av.codec.Codec, like: VideoInfo) -> tuple[str, list[str]]:
    """Pixel format of the output stream and what to tell the user about it."""
    if options.pix_fmt is not None:
        return options.pix_fmt, []
    chosen, note = output_pix_fmt(like.pix_fmt, codec, like.width, like.height)
    notes = [note] if note else []
    if _sampling_depth(chosen)[1] > 8:
        notes.append(f"{like.pix_fmt} source: written as {chosen}, with 8-bit precision (depix works on 8-bit RGB)")
    return chosen, [f"{like.path}: {n}" for n in notes]


def _set_quality(context: av.VideoCodecContext, options: EncodeOptions) -> None:
    """Explicit quality for each encoder family (PyAV's default is a low fixed bitrate)."""
    name = context.codec.name
    if name in ("libx264", "libx265"):
        opts = {"crf": str(options.crf), "preset": options.preset}
        if name == "libx265":
            opts["x265-params"] = "log-level=error"
        context.options = opts
    elif name == "libvpx-vp9":
        context.options = {"crf": str(options.crf), "b": "0"}  # constant quality needs bitrate 0
    elif name in ("mpeg4", "mpeg2video", "mpeg1video"):
        qscale = 2 * 2 ** ((options.crf - CRF_QSCALE_REF) / CRF_PER_QSCALE_DOUBLING)
        qscale = min(max(round(qscale), QSCALE_RANGE[0]), QSCALE_RANGE[1])
        context.qscale = True  # fixed quantiser; PyAV frames carry no per-frame quality, so pin
        context.global_quality = qscale * FF_QP2LAMBDA  # it with qmin = qmax as well
        context.qmin = context.qmax = qscale
    else:
        raise ConfigError(f"codec {name!r}: no quality setting known; use libx264, libx265, libvpx-vp9 or mpeg4")


class VideoWriter:
    """Encode frames to `out_path` atomically, keeping fps, time base, pts and (optionally) audio.

    with VideoWriter("out.mp4", like=probe("in.mp4"), audio_from="in.mp4") as w:
        for f in read_frames("in.mp4"):
            w.write(f.image, f.pts)

    Writes `.<name>.depix-tmp-<random><ext>` in the target directory and renames it onto `out_path`
    on a clean exit; on any exception (KeyboardInterrupt too) the temp file is removed and
    `out_path` is left as it was. Audio of `audio_from` is stream-copied when the container
    accepts its codec, else re-encoded to AAC (or the container's default audio codec).
    Frames are written upright as given: no display matrix, so `like.rotation` is not re-applied.

    `part=True` (frames of a `TimeWindow`, with their source pts): timestamps are moved so that the first
    frame written is at 0, and only the audio from that frame to the end of the last one is kept, moved
    by the same amount (it starts within one audio packet of the first frame when stream-copied).
    """

    def __init__(self, out_path: str | os.PathLike, like: VideoInfo, options: EncodeOptions = EncodeOptions(),
                 audio_from: str | os.PathLike | None = None, part: bool = False) -> None:
        self.out_path = os.fspath(out_path)
        self.like = like
        self.options = options
        self.audio_from = os.fspath(audio_from) if audio_from is not None else None
        self.part = part
        self._offset_s: float | None = None  # part: source time of the first frame, subtracted from every time
        self._offset: int = 0  # ... in pts of `like.time_base`
        self._audio_end_s = math.inf  # part: source time after which no audio is kept
        self.frames_written = 0
        self.notes: list[str] = []  # what the output changed from the source (pixel format); also warned
        self._tmp: str | None = None
        self._out = None
        self._video = None
        self._audio_in = None
        self._audio_packets = None
        self._audio_out = None
        self._audio_copy = True
        self._resampler = None
        self._pending = None  # next audio packet not yet muxed
        self._last_pts: int | None = None

    # -- setup --

    def __enter__(self) -> VideoWriter:
        directory = os.path.dirname(os.path.abspath(self.out_path))
        name = os.path.basename(self.out_path)
        ext = os.path.splitext(name)[1]
        try:
            fd, self._tmp = tempfile.mkstemp(prefix=f".{name}{TMP_TAG}", suffix=ext, dir=directory)
            os.close(fd)
        except OSError as exc:
            raise OutputError(f"{self.out_path}: cannot create a file in {directory} ({_reason(exc)})") from None
        try:
            self._open()
        except BaseException:
            self._discard()
            raise
        return self

    def _open(self) -> None:
        try:
            self._out = av.open(self._tmp, "w")
        except (ValueError, av.error.FFmpegError) as exc:
            raise OutputError(f"{self.out_path}: unknown container for this file name ({_reason(exc)})") from None
        like, options = self.like, self.options
        try:
            stream = self._out.add_stream(options.codec, rate=like.fps)
        except (ValueError, av.error.FFmpegError) as exc:
            raise ConfigError(f"{self.out_path}: cannot encode with {options.codec!r} ({_reason(exc)})") from None
        if stream.codec_context.codec.name == "libx265" and min(like.width, like.height) < X265_MIN_SIDE:
            raise ConfigError(f"libx265 needs frames of at least {X265_MIN_SIDE} px a side, got "
                              f"{like.width}x{like.height}; use libx264")
        stream.width, stream.height = like.width, like.height
        stream.pix_fmt, self.notes = _pix_fmt(options, stream.codec_context.codec, like)
        for note in self.notes:
            warnings.warn(note, DepixWarning, stacklevel=2)
        stream.time_base = like.time_base
        stream.codec_context.time_base = like.time_base  # pts pass straight through
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = (
            options.colour or (BT709, BT709, BT709, RANGE_MPEG))
        _set_quality(ctx, options)
        self._video = stream
        if self.audio_from is not None:
            self._open_audio()
        try:
            self._out.start_encoding()
        except (ValueError, av.error.FFmpegError) as exc:
            raise OutputError(f"{self.out_path}: cannot start encoding ({_reason(exc)})") from None

    def _open_audio(self) -> None:
        self._audio_in = _open_input(self.audio_from)
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        source = self._audio_in.streams.audio[0]
        try:
            self._audio_out = self._out.add_stream_from_template(source)
        except ValueError:  # the container does not accept this codec: re-encode
            self._audio_copy = False
        if not self._audio_copy:
            supported = self._out.supported_codecs
            codec = "aac" if "aac" in supported else self._out.default_audio_codec
            rate = source.codec_context.sample_rate
            self._audio_out = self._out.add_stream(codec, rate=rate)
            self._audio_out.layout = source.codec_context.layout.name
            self._audio_out.bit_rate = AAC_BITRATE
            fmt = self._audio_out.codec_context.codec.audio_formats[0].name
            self._resampler = av.AudioResampler(format=fmt, layout=source.codec_context.layout.name, rate=rate)
        self._audio_packets = None if self.part else self._audio_in.demux(source)

    def _start_part(self, pts: int) -> None:
        """Part: the first frame's source `pts` becomes time 0; audio is read from there on (after a seek)."""
        self._offset, self._offset_s = pts, float(pts * self.like.time_base)
        if self._audio_in is None:
            return
        with contextlib.suppress(av.error.FFmpegError):  # unseekable: demux from the start, skip packets
            self._audio_in.seek(int(self._offset_s * av.time_base), backward=True)
        self._audio_packets = self._audio_in.demux(self._audio_in.streams.audio[0])

    def _shift(self, time_base: Fraction) -> int:
        """The part's offset in units of `time_base` (0 when writing a whole video)."""
        return round(self._offset_s / time_base) if self._offset_s else 0

    # -- writing --

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one `(H, W, 3)` uint8 RGB frame; `pts` in `like.time_base` (None: from the index).

        A pts that does not increase is replaced by the previous one + 1 (encoders need order).
        """
        like = self.like
        if image.shape != (like.height, like.width, 3) or image.dtype != np.uint8:
            raise ValueError(f"expected a ({like.height}, {like.width}, 3) uint8 image, "
                             f"got {image.shape} {image.dtype}")
        self.write_frame(self.convert(image), pts)

    def convert(self, image: np.ndarray) -> av.VideoFrame:
        """An `(H, W, 3)` uint8 RGB image as a frame in the stream's pixel format (BT.709, limited range)."""
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        space, _, _, rng = self.options.colour or (BT709, BT709, BT709, RANGE_MPEG)
        return frame.reformat(format=self._video.pix_fmt, dst_colorspace="itu709" if space == BT709 else "itu601",
                              dst_color_range="JPEG" if rng == RANGE_JPEG else "MPEG")

    @property
    def pix_fmt(self) -> str:
        """The pixel format of the encoded stream (frames given to `write_frame` must have it)."""
        return self._video.pix_fmt

    def write_frame(self, frame: av.VideoFrame, pts: int | None = None) -> None:
        """Encode a frame already in `pix_fmt` (a decoded frame passed through bit-exactly); `pts` as `write`."""
        like = self.like
        if pts is None:
            pts = round(self.frames_written / (like.fps * like.time_base))
        source_s = float(pts * like.time_base)
        if self.part:
            if self._offset_s is None:
                self._start_part(pts)
            pts -= self._offset
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        frame.pts = pts
        frame.time_base = like.time_base
        try:
            self._out.mux(self._video.encode(frame))
            self._mux_audio_until(source_s + (0.0 if self.part else AUDIO_LEAD_S))  # part: none past its end
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.out_path}: write failed ({_reason(exc)})") from None
        self._last_pts = pts
        self.frames_written += 1

    def _mux_audio_until(self, until_s: float) -> None:
        if self._audio_packets is None:
            return
        while True:
            if self._pending is None:
                try:
                    self._pending = next(self._audio_packets, None)
                except av.error.FFmpegError as exc:
                    raise InputError(f"{self.audio_from}: corrupt audio data ({_reason(exc)})") from None
                if self._pending is None:
                    self._audio_packets = None
                    return
            packet = self._pending
            if packet.dts is None:  # demuxer flush packet
                self._pending = None
                continue
            at_s = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
            if at_s >= self._audio_end_s - TIME_EPS_S:  # after the part
                self._pending = self._audio_packets = None
                return
            if until_s is not None and packet.dts * packet.time_base > until_s:
                return
            self._pending = None
            if self._offset_s is not None:
                if at_s < self._offset_s - TIME_EPS_S:  # before the part
                    continue
                shift = self._shift(packet.time_base)
                packet.pts = packet.pts - shift if packet.pts is not None else None
                packet.dts -= shift
            if self._audio_copy:
                packet.stream = self._audio_out
                self._out.mux(packet)
            else:
                try:
                    decoded_frames = packet.decode()
                except av.error.FFmpegError as exc:
                    raise InputError(f"{self.audio_from}: corrupt audio data ({_reason(exc)})") from None
                for decoded in decoded_frames:
                    for resampled in self._resampler.resample(decoded):
                        self._out.mux(self._audio_out.encode(resampled))

    # -- finishing --

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._discard()
            return False
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise
        return False

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise OutputError(f"{self.out_path}: no frames to write")
        try:
            self._out.mux(self._video.encode(None))
            if self.part:  # the audio under the frames, up to the end of the last one, not past it
                last_s = float((self._last_pts + self._offset) * self.like.time_base)
                self._audio_end_s = last_s + 1 / float(self.like.fps)
            self._mux_audio_until(math.inf)
            if self._audio_out is not None and not self._audio_copy:
                for resampled in self._resampler.resample(None):
                    self._out.mux(self._audio_out.encode(resampled))
                self._out.mux(self._audio_out.encode(None))
            self._out.close()
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.out_path}: write failed ({_reason(exc)})") from None
        self._out = None
        self._close_audio_in()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(self._tmp, self.out_path)
        self._tmp = None

    def _close_audio_in(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def _discard(self) -> None:
        """Close everything quietly and delete the temp file (error path)."""
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        with contextlib.suppress(Exception):
            self._close_audio_in()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


# ------------------------------------------------------------------------------- synthetic test clips

FACE_PERIOD_S = 4.0  # s per horizontal sweep of the synthetic face
TONE_HZ = 440.0  # synthetic audio tone
TONE_RATE = 48_000  # Hz sample rate
TONE_FRAME = 1024  # samples per audio frame (AAC frame size)


def _ellipse_cover(xx, yy, cx, cy, ax, ay):
    """Anti-aliased coverage in [0, 1] of an ellipse; xx, yy are pixel-centre coordinates."""
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) * min(ax, ay) + 0.5, 0.0, 1.0)[..., None]


def h264_roundtrip(image: np.ndarray, crf: int = 23) -> np.ndarray:
    """One `(H, W, 3)` uint8 RGB frame through libx264 (yuv420p, even sizes) and back: codec artefacts
    for tests and benchmarks of the mosaic locator."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
        s.options = {"crf": str(crf)}
        for p in s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def synthetic_face_frames(n_frames: int, size: tuple[int, int] = (160, 120), fps: float = 25.0,
                          seed: int = 0) -> Iterator[np.ndarray]:
    """Deterministic moving face-like pattern: `(H, W, 3)` uint8 RGB frames, size = (w, h).

    A skin ellipse with hair, eyes and mouth drifts with sub-pixel motion over a static
    textured background.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 2, w // 8 + 2, 3), dtype=np.float32)
    background = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w] * 90 + 60
    background += rng.normal(0, 8, (h, w, 3)).astype(np.float32)
    skin_noise = rng.normal(0, 5, (h, w, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    skin, hair = np.array([224, 172, 140], np.float32), np.array([60, 40, 30], np.float32)
    eye, mouth = np.array([30, 30, 40], np.float32), np.array([170, 50, 60], np.float32)
    ay = 0.22 * h  # face half-height, px
    ax = 0.75 * ay
    for i in range(n_frames):
        t = i / fps
        cx = w * (0.5 + 0.2 * math.sin(2 * math.pi * t / FACE_PERIOD_S))
        cy = h * (0.5 + 0.05 * math.cos(2 * math.pi * t / FACE_PERIOD_S))
        x0, x1 = max(0, int(cx - 1.3 * ax) - 1), min(w, int(cx + 1.3 * ax) + 2)
        y0, y1 = max(0, int(cy - 1.4 * ay) - 1), min(h, int(cy + 1.2 * ay) + 2)
        img = background.copy()
        win, sx, sy = img[y0:y1, x0:x1], xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
        layers = [
            (_ellipse_cover(sx, sy, cx, cy - 0.25 * ay, 1.1 * ax, 0.95 * ay), hair),
            (_ellipse_cover(sx, sy, cx, cy, ax, ay), skin + skin_noise[y0:y1, x0:x1]),
            (_ellipse_cover(sx, sy, cx - 0.4 * ax, cy - 0.2 * ay, 0.16 * ax, 0.1 * ay), eye),
            (_ellipse_cover(sx, sy, cx + 0.4 * ax, cy - 0.2 * ay, 0.16 * ax, 0.1 * ay), eye),
            (_ellipse_cover(sx, sy, cx, cy + 0.5 * ay, 0.4 * ax, 0.08 * ay), mouth),
        ]
        for cover, colour in layers:
            win[:] = win * (1 - cover) + colour * cover
        yield np.clip(img, 0, 255).astype(np.uint8)


def write_test_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25,
                    audio: bool = False, audio_codec: str = "aac", rotation: int = 0,
                    options: EncodeOptions = EncodeOptions(crf=18, preset="ultrafast")) -> VideoInfo:
    """Write RGB frames to a small clip (tests, benchmarks); returns `probe(path)`.

    audio: add a sine tone of the clip's length in `audio_codec` (e.g. "aac", "pcm_mulaw").
    rotation: degrees clockwise a player should turn the picture; frames are stored turned the
    other way with a display matrix, so a rotation-aware reader gets `frames` back upright.
    """
    path = os.fspath(path)
    rate = Fraction(fps).limit_denominator(1001)
    quarter_turns = (rotation // 90) % 4
    with av.open(path, "w") as out:
        video = None
        tone = None
        sample = 0
        for i, image in enumerate(frames):
            stored = np.ascontiguousarray(np.rot90(image, quarter_turns))  # ccw: display turns it back cw
            if video is None:
                video = out.add_stream(options.codec, rate=rate)
                video.height, video.width = stored.shape[:2]
                video.pix_fmt = options.pix_fmt or output_pix_fmt("yuv420p", video.codec_context.codec,
                                                                  video.width, video.height)[0]
                _set_quality(video.codec_context, options)
                if quarter_turns:
                    video.set_display_rotation(-90 * quarter_turns)  # counter-clockwise degrees
                if audio:
                    tone = out.add_stream(audio_codec, rate=TONE_RATE)
                    tone.layout = "mono"
                    tone_fmt = tone.codec_context.codec.audio_formats[0].name
                    resampler = av.AudioResampler(format=tone_fmt, layout="mono", rate=TONE_RATE)
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(video.encode(frame))
            while tone is not None and sample < (i + 1) / rate * TONE_RATE:
                t = (sample + np.arange(TONE_FRAME)) / TONE_RATE
                pcm = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[None]
                chunk = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = TONE_RATE, sample, Fraction(1, TONE_RATE)
                for converted in resampler.resample(chunk):
                    out.mux(tone.encode(converted))
                sample += TONE_FRAME
        if video is None:
            raise ValueError("write_test_clip needs at least one frame")
        out.mux(video.encode(None))
        if tone is not None:
            out.mux(tone.encode(None))
    return probe(path)


def make_synthetic_clip(path: str | os.PathLike, n_frames: int, size: tuple[int, int] = (160, 120),
                        fps: float = 25, audio: bool = False, **kwargs) -> VideoInfo:
    """Write `synthetic_face_frames(n_frames, size)` to `path` (kwargs: see write_test_clip)."""
    return write_test_clip(path, synthetic_face_frames(n_frames, size, fps), fps, audio, **kwargs)
