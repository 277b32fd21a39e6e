"""Size vs quality of the crop dataset's track videos, per x264 crf / pix_fmt.

Runs detection + tracking on a sample of clips, keeps the uncompressed head crops in memory, encodes
each track with every setting, decodes it back with cv2.VideoCapture (as load_crops does) and reports
bytes per frame, the size extrapolated to all frames of the CSV, and PSNR (RGB, all pixels) of the
stored crops against the uncompressed crops.

    python bench/bench_export.py /work/shared/data/clips.csv --every 12

With --check DIR it instead measures an exported dataset: every N-th track is decoded (load_crops) and
compared with crops recomputed from its source clip and the boxes in index.json.

    python bench/bench_export.py /work/shared/data/clips.csv --check /work/main/scratch/crops --every 5
"""

import argparse
import csv
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from depixcli.dataset.config import CROP_SIZE, MIN_TRACK, PRESET, PrepareConfig
from depixcli.dataset.crops import decode_track, read_index
from depixcli.dataset.export import TrackWriter
from depixcli.dataset.inputs import clip_fps_frames, clip_frames, collect_inputs, readable_inputs
from depixcli.faces.detect import load_detector
from depixcli.faces.track import TrackConfig, build_tracks
from depixcli.geometry.crop import crop, head_box


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--every", type=int, default=12, help="use every N-th clip of the CSV")
    ap.add_argument("--settings", default="14:yuv444p,17:yuv444p,20:yuv444p,23:yuv444p,17:yuv420p,20:yuv420p")
    ap.add_argument("--preset", default=PRESET)
    ap.add_argument("--size", type=int, default=CROP_SIZE)
    ap.add_argument("--check", help="exported dataset directory to measure instead")
    args = ap.parse_args()
    if args.check:
        check(Path(args.check), args.every)
        return
    clips = readable_inputs(collect_inputs([args.csv]))
    total_frames = sum(int(r["frames"]) for r in csv.DictReader(open(args.csv)))
    sample = clips[:: args.every]
    det = load_detector("yunet")
    tracks = []  # (fps, crops (T, S, S, 3))
    for c in sample:
        fps, _ = clip_fps_frames(c.path)
        tr = build_tracks([det.detect(f) for f in clip_frames(c.path)], TrackConfig(min_length=MIN_TRACK))
        crops = {t.id: [] for t in tr}
        for i, img in enumerate(clip_frames(c.path)):
            for t in tr:
                b = t.box_at(i)
                if b is not None:
                    crops[t.id].append(crop(img, head_box(b), args.size))
        tracks += [(fps, np.stack(v)) for v in crops.values() if v]
    n = sum(len(v) for _, v in tracks)
    n_src = sum(clip_fps_frames(c.path)[1] for c in sample)
    print(f"{len(sample)} clips, {len(tracks)} tracks, {n} crop frames ({n / n_src:.3f} per source frame)")
    print(f"{'crf':>4} {'pix_fmt':>8} {'B/frame':>8} {'MiB all':>8} {'PSNR dB':>8} {'enc s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings.split(","):
            crf, pix = setting.split(":")
            cfg = PrepareConfig(size=args.size, crf=int(crf), pix_fmt=pix, preset=args.preset)
            size, se, t0 = 0, 0.0, time.time()
            for k, (fps, v) in enumerate(tracks):
                p = Path(tmp) / f"t{k}.mp4"
                w = TrackWriter(p, args.size, Fraction(fps), cfg)
                for img in v:
                    w.write(img)
                w.close()
                size += p.stat().st_size
                back = decode_track(p, args.size)
                assert back.shape == v.shape, (back.shape, v.shape)
                se += float(np.sum((back.astype(np.float64) - v) ** 2))
            psnr = 10 * np.log10(255**2 / (se / (n * args.size * args.size * 3)))
            mib = size / n * total_frames * (n / n_src) / 2**20
            print(f"{crf:>4} {pix:>8} {size / n:8.0f} {mib:8.1f} {psnr:8.2f} {time.time() - t0:6.1f}")


def check(directory: Path, every: int) -> None:
    from depixcli.geometry.crop import CropBox

    index = read_index(directory)
    size = index["crop_size"]
    entries = index["tracks"][::every]
    se, n, nbytes = 0.0, 0, 0
    for e in entries:
        stored = decode_track(directory / e["file"], size)
        first = e["first_frame"]
        ref = []
        for i, img in enumerate(clip_frames(Path(e["source"]))):
            if first <= i < first + e["frames"]:
                ref.append(crop(img, CropBox(*e["boxes"][i - first]), size))
        ref = np.stack(ref)
        assert ref.shape == stored.shape, (e["file"], ref.shape, stored.shape)
        se += float(np.sum((stored.astype(np.float64) - ref) ** 2))
        n += ref.size
        nbytes += (directory / e["file"]).stat().st_size
    frames = sum(e["frames"] for e in entries)
    print(f"{len(entries)} of {len(index['tracks'])} tracks, {frames} frames: {nbytes / frames:.0f} B/frame, "
          f"PSNR {10 * np.log10(255**2 / (se / n)):.2f} dB (RGB, stored vs recomputed crops)")


if __name__ == "__main__":
    main()
