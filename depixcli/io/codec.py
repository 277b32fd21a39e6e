"""Encoder settings: what the writer is told (`EncodeOptions`), the output pixel format chosen for a source
(`output_pix_fmt`: its chroma sampling and bit depth where the encoder has them) and the quality setting
of each encoder (`set_quality`: crf, or a qscale for MPEG-4-style encoders).

libx264 runs without its macroblock tree (`mbtree=0`): with it, on some content (B-frames, real or panning
footage) x264 reads heap memory it never wrote, so the same frames gave different bytes from one encode to
the next in one process, and between processes (`--jobs`, the cluster); proven by glibc's MALLOC_PERTURB_,
which changes the output with the tree on and not with it off (tests/io/test_video.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import av

from depixcli.errors import ConfigError
from depixcli.io.video import VideoInfo

CRF_RANGE = (0, 51)  # x264/x265 constant rate factor: 0 lossless .. 51 worst
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                "veryslow", "placebo")
CRF_QSCALE_REF = 18  # crf that maps to MPEG-4 qscale 2 (visually lossless)
CRF_PER_QSCALE_DOUBLING = 6  # +6 crf ~ half the bitrate, as doubling qscale
QSCALE_RANGE = (1, 31)  # MPEG-4 / MPEG-2 quantiser scale
FF_QP2LAMBDA = 118  # libavcodec: lambda per qscale unit


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


def stream_pix_fmt(options: EncodeOptions, codec: av.codec.Codec, like: VideoInfo) -> tuple[str, list[str]]:
    """Pixel format of the output stream and what to tell the user about it."""
    if options.pix_fmt is not None:
        return options.pix_fmt, []
    chosen, note = output_pix_fmt(like.pix_fmt, codec, like.width, like.height)
    notes = [note] if note else []
    if _sampling_depth(chosen)[1] > 8:
        notes.append(f"{like.pix_fmt} source: written as {chosen}, with 8-bit precision (depix works on 8-bit RGB)")
    return chosen, [f"{like.path}: {n}" for n in notes]


def set_quality(context: av.VideoCodecContext, options: EncodeOptions) -> None:
    """Explicit quality for each encoder family (PyAV's default is a low fixed bitrate)."""
    name = context.codec.name
    if name in ("libx264", "libx265"):
        opts = {"crf": str(options.crf), "preset": options.preset}
        if name == "libx264":  # x264's macroblock tree reads uninitialised heap memory on some content (its
            opts["mbtree"] = "0"  # bytes then depend on what the process did before); off: reproducible
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
