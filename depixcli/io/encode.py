"""Streaming video encoding on PyAV: the atomic `VideoWriter` with audio pass-through (its settings:
`io.codec`), and the one H.264 round trip of frames in memory (`h264_roundtrip`).

The writer converts RGB with BT.709, limited range, and tags the stream so.

Pixel format: the writer keeps the source's chroma sampling (4:2:0, 4:2:2, 4:4:4) and bit depth (8, 10,
12) when the encoder has that format (`io.codec.output_pix_fmt`), else takes the closest one it has and says so
(a `DepixWarning`). Frames pass through depix as 8-bit RGB, so a 10-bit source keeps its format but is
written with 8-bit precision; that is said too.

Odd frame sizes: x264/x265 4:2:0 needs even width and height (H.264 crops in 2-px units there), so
odd-sized frames are encoded as yuv444p when the encoder has it, which keeps the exact size with
no padding; such files play in ffmpeg/VLC/mpv, not in every browser. mpeg4 handles odd 4:2:0 itself.

Audio is muxed in the same pass as the video: after each frame, the source's audio packets up to
that time (+ AUDIO_LEAD_S) are copied (or re-encoded), and the muxer interleaves by dts.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from fractions import Fraction

import av
import numpy as np

from depixcli.errors import ConfigError, DepixWarning, InputError, OutputError
from depixcli.io.codec import EncodeOptions, set_quality, stream_pix_fmt
from depixcli.io.files import commit, discard, temp_beside
from depixcli.io.video import TIME_EPS_S, VideoInfo, error_reason, open_input

X265_MIN_SIDE = 64  # px; libx265 4.x corrupts the heap on smaller frames (seen at 34x22, 34x34)
AUDIO_LEAD_S = 0.5  # s of audio muxed ahead of the current video time while writing
AAC_BITRATE = 192_000  # bit/s when the audio has to be re-encoded
BT709 = 1  # AVCOL_SPC/PRI/TRC_BT709
RANGE_JPEG = 2  # AVCOL_RANGE_JPEG (full range)
RANGE_MPEG = 1  # AVCOL_RANGE_MPEG (limited, 16-235)


class VideoWriter:
    """Encode frames to `out_path` atomically, keeping fps, time base, pts and (optionally) audio.

    with VideoWriter("out.mp4", like=probe("in.mp4"), audio_from="in.mp4") as w:
        for f in read_frames("in.mp4"):
            w.write(f.image, f.pts)

    Writes a temporary beside `out_path` and renames it onto `out_path` on a clean exit (`io.files`); on any
    exception (KeyboardInterrupt too) the temporary is removed and `out_path` is left as it was.
    Audio of `audio_from` is stream-copied when the container accepts its codec, else re-encoded to AAC
    (or the container's default audio codec).
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
        self._tmp = temp_beside(self.out_path)
        self._or_discard(self._open)
        return self

    def _or_discard(self, step) -> None:
        """Run `step()`; on any failure (Ctrl-C included) remove the temporary file, then re-raise."""
        try:
            step()
        except BaseException:
            self._discard()
            raise

    def _open(self) -> None:
        try:
            self._out = av.open(self._tmp, "w")
        except (ValueError, av.error.FFmpegError) as exc:
            raise OutputError(f"{self.out_path}: unknown container for this file name ({error_reason(exc)})") from None
        like, options = self.like, self.options
        try:
            stream = self._out.add_stream(options.codec, rate=like.fps)
        except (ValueError, av.error.FFmpegError) as exc:
            raise ConfigError(f"{self.out_path}: cannot encode with {options.codec!r} ({error_reason(exc)})") from None
        if stream.codec_context.codec.name == "libx265" and min(like.width, like.height) < X265_MIN_SIDE:
            raise ConfigError(f"libx265 needs frames of at least {X265_MIN_SIDE} px a side, got "
                              f"{like.width}x{like.height}; use libx264")
        stream.width, stream.height = like.width, like.height
        stream.pix_fmt, self.notes = stream_pix_fmt(options, stream.codec_context.codec, like)
        for note in self.notes:
            warnings.warn(note, DepixWarning, stacklevel=2)
        stream.time_base = like.time_base
        stream.codec_context.time_base = like.time_base  # pts pass straight through
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_primaries, ctx.color_trc, ctx.color_range = (
            options.colour or (BT709, BT709, BT709, RANGE_MPEG))
        set_quality(ctx, options)
        self._video = stream
        if self.audio_from is not None:
            self._open_audio()
        try:
            self._out.start_encoding()
        except (ValueError, av.error.FFmpegError) as exc:
            raise OutputError(f"{self.out_path}: cannot start encoding ({error_reason(exc)})") from None

    def _open_audio(self) -> None:
        self._audio_in = open_input(self.audio_from)
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
            raise OutputError(f"{self.out_path}: write failed ({error_reason(exc)})") from None
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
                    raise InputError(f"{self.audio_from}: corrupt audio data ({error_reason(exc)})") from None
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
                    raise InputError(f"{self.audio_from}: corrupt audio data ({error_reason(exc)})") from None
                for decoded in decoded_frames:
                    for resampled in self._resampler.resample(decoded):
                        self._out.mux(self._audio_out.encode(resampled))

    # -- finishing --

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._discard()
            return False
        self._or_discard(self._finish)
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
            raise OutputError(f"{self.out_path}: write failed ({error_reason(exc)})") from None
        self._out = None
        self._close_audio_in()
        tmp, self._tmp = self._tmp, None
        commit(tmp, self.out_path)

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
        discard(self._tmp)
        self._tmp = None


def h264_roundtrip(frames: np.ndarray, crf: int = 23) -> np.ndarray:
    """Frames through libx264 (yuv420p, even sizes, one clip, default GOP) and back, in memory: codec
    artefacts for training, evaluation, tests and benchmarks. `(H, W, 3)` or `(N, H, W, 3)` uint8 RGB in,
    the same shape out."""
    stack = frames[None] if frames.ndim == 3 else frames
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = stack.shape[2], stack.shape[1], "yuv420p"
        s.options = {"crf": str(crf)}
        for image in stack:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    buf.seek(0)
    with av.open(buf) as c:
        out = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    if len(out) != len(stack):
        raise OutputError(f"H.264 round trip returned {len(out)} of {len(stack)} frames")
    return out[0] if frames.ndim == 3 else out
