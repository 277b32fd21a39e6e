"""Decode / encode speed of depixcli.io.video and depixcli.io.encode on generated face-pattern clips.

    python bench/bench_video.py                 # 1280x720 and 1920x1080, 50 frames each
    python bench/bench_video.py --frames 100 --sizes 1280x720

Encode fps counts only the time spent inside VideoWriter (RGB->YUV, x264, mux, flush, rename),
not the time to generate the pattern. Decode fps is read_frames() over the crf-18 medium file,
RGB conversion and rotation check included. "x realtime" is fps / clip fps.
"""

import argparse
import os
import tempfile
import time

from depixcli.io.codec import EncodeOptions
from depixcli.io.encode import VideoWriter
from depixcli.io.synthetic import make_synthetic_clip, synthetic_face_frames
from depixcli.io.video import read_frames

FPS = 25  # frames per second of the generated clips
PRESETS = ("medium", "veryfast")
CRF = 18


def encode_fps(path, like, n_frames, size, options):
    """(frames per wall second, CPU ms per frame) inside VideoWriter, pattern generation excluded."""
    frames = synthetic_face_frames(n_frames, size, FPS)
    gen_wall = gen_cpu = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    with VideoWriter(path, like, options) as writer:
        for _ in range(n_frames):
            t_wall, t_cpu = time.perf_counter(), time.process_time()
            image = next(frames)
            gen_wall += time.perf_counter() - t_wall
            gen_cpu += time.process_time() - t_cpu
            writer.write(image)
    wall = time.perf_counter() - wall - gen_wall
    cpu = time.process_time() - cpu - gen_cpu
    return n_frames / wall, 1000 * cpu / n_frames


def decode_fps(path):
    """(frames per wall second, CPU ms per frame) of read_frames()."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = sum(1 for _ in read_frames(path))
    return n / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50, help="frames per clip")
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="comma-separated WxH list")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs visible; {args.frames} frames per clip at {FPS} fps, crf {CRF}")
    print(f"{'size':>10} {'step':>22} {'fps':>7} {'x realtime':>10} {'cpu ms/frame':>12} {'MB':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.sizes.split(","):
            w, h = (int(v) for v in spec.split("x"))
            # a 2-frame clip of the same size gives the writer its fps, time base and size
            like = make_synthetic_clip(os.path.join(tmp, f"like{w}.mp4"), 2, (w, h), fps=FPS)
            enc = {}
            for preset in PRESETS:
                out = os.path.join(tmp, f"{w}x{h}_{preset}.mp4")
                enc[preset] = encode_fps(out, like, args.frames, (w, h), EncodeOptions(crf=CRF, preset=preset))
                fps, cpu_ms = enc[preset]
                print(f"{spec:>10} {'encode ' + preset:>22} {fps:7.1f} {fps / FPS:10.2f} {cpu_ms:12.0f} "
                      f"{os.path.getsize(out) / 1e6:6.2f}")
            dec, dec_cpu = decode_fps(os.path.join(tmp, f"{w}x{h}_medium.mp4"))
            print(f"{spec:>10} {'decode (read_frames)':>22} {dec:7.1f} {dec / FPS:10.2f} {dec_cpu:12.0f}")
            print(f"{spec:>10} {'veryfast / medium':>22} {enc['veryfast'][0] / enc['medium'][0]:7.2f}x")
            print(f"{spec:>10} {'decode / encode medium':>22} {dec / enc['medium'][0]:7.2f}x")


if __name__ == "__main__":
    main()
