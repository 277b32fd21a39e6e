"""Accuracy and speed of the mosaic locator (`depixcli.locate.locate_mosaics`).

Three sets:
- synthetic 1280x720 scenes (scikit-image photos + text + a UI bar) with a face photo mosaicked in one
  of five ways (16 / 8 blocks over the box, image-anchored square or non-square block size, OpenCV
  area-down / nearest-up with non-divisible sizes), face 60..300 px, after H.264 (crf 23) or JPEG (q 85);
- whole-frame mosaics (pixelated face crops, 128 / 256 px and full size, 16 and 8 blocks) of the
  first frame of every N-th clip of a clips CSV, after H.264;
- small frames: `depixcli.io.synthetic.synthetic_face_frames` (a face over a noisy 8 px background grid) at
  360x288 (16 blocks over a tall face box, GRID-corpus size) and 320x240 (8 blocks, the `depix run` test
  clip), encoded as 10-frame H.264 clips (crf 18 and 23, as `write_test_clip`): per-frame recall;
- false alarms: the same scenes and clip frames with no mosaic.
A hit needs block size within 5 % (both axes) and rect IoU > 0.8. Speed: wall and CPU time per
720p frame (single thread; on a shared machine the CPU time is the steadier figure).

    python bench/bench_locate.py --n 60 --clips /work/shared/data/clips.csv --clip-every 20
"""

import argparse
import os
import tempfile
import time

import cv2
import numpy as np
import skimage.data

from depixcli.dataset.inputs import collect_inputs
from depixcli.geometry.boxes import iou
from depixcli.geometry.mosaic import MosaicGrid, apply_mosaic, clipped_rect, grid_from_block_size, grid_from_blocks
from depixcli.io.codec import EncodeOptions
from depixcli.io.encode import h264_roundtrip
from depixcli.io.synthetic import busy_scene, synthetic_face_frames, write_test_clip
from depixcli.io.video import read_frames
from depixcli.locate.regions import locate_mosaics

KINDS = ("blocks16", "blocks8", "size", "size_nonsquare", "opencv")


def jpeg(img, q=85):
    return cv2.imdecode(cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1)[:, :, ::-1]


def scene(rng, h=720, w=1280):
    photos = [skimage.data.coffee, skimage.data.chelsea, skimage.data.rocket, skimage.data.immunohistochemistry,
              skimage.data.astronaut]
    return busy_scene(photos[rng.integers(len(photos))](), rng, (w, h), caption="Hello depix 123")


def mosaicked(rng, kind):
    img = scene(rng)
    h, w = img.shape[:2]
    fw = int(rng.integers(60, 300))
    fh = min(int(fw * rng.uniform(0.9, 1.4)), h)
    fx, fy = int(rng.integers(0, w - fw)), int(rng.integers(0, h - fh + 1))
    img[fy:fy + fh, fx:fx + fw] = cv2.resize(skimage.data.astronaut()[30:250, 150:330], (fw, fh))
    box = (fx + rng.uniform(0, 1), fy + rng.uniform(0, 1), fx + fw - rng.uniform(0, 1), fy + fh)
    if kind == "opencv":
        nx, ny = int(rng.integers(10, 20)), int(rng.integers(10, 20))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        small = cv2.resize(img[y0:y1, x0:x1], (nx, ny), interpolation=cv2.INTER_AREA)
        img[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
        return img, MosaicGrid(x0, y0, x1, y1, (x1 - x0) / nx, (y1 - y0) / ny, x0, y0)
    grid = {"blocks16": lambda: grid_from_blocks(box, 16), "blocks8": lambda: grid_from_blocks(box, 8),
            "size": lambda: grid_from_block_size(box, int(rng.integers(6, 30))),
            "size_nonsquare": lambda: grid_from_block_size(box, (int(rng.integers(6, 24)), int(rng.integers(6, 24)))),
            }[kind]()
    return apply_mosaic(img, grid), grid


def judge(regions, grid, shape):
    gt = clipped_rect(grid, shape[:2])
    best = max(regions, key=lambda r: iou(r.rect, gt), default=None)
    hit = (best is not None and iou(best.rect, gt) > 0.8 and abs(best.cell_w / grid.cell_w - 1) < 0.05
           and abs(best.cell_h / grid.cell_h - 1) < 0.05)
    return hit, sum(iou(r.rect, gt) < 0.1 for r in regions), (iou(best.rect, gt) if best else 0.0)


def timed(frame):
    t, c = time.perf_counter(), time.process_time()
    r = locate_mosaics(frame)
    return r, time.perf_counter() - t, time.process_time() - c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="synthetic mosaic scenes")
    ap.add_argument("--clips", default=None, help="clips CSV / directory for whole-frame and clean frames")
    ap.add_argument("--clip-every", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    hits = {k: [0, 0] for k in KINDS}
    small = [0, 0]
    fa = 0
    wall, cpu, ious = [], [], []
    for i in range(args.n):
        kind = KINDS[i % len(KINDS)]
        img, grid = mosaicked(rng, kind)
        img = h264_roundtrip(img) if i % 2 == 0 else jpeg(img)
        r, tw, tc = timed(img)
        wall.append(tw)
        cpu.append(tc)
        hit, f, best_iou = judge(r, grid, img.shape)
        hits[kind][0] += hit
        hits[kind][1] += 1
        fa += f
        ious.append(best_iou)
        if min(grid.x1 - grid.x0, grid.y1 - grid.y0) < 96:
            small[0] += hit
            small[1] += 1
    n_hit = sum(h for h, _ in hits.values())
    print(f"synthetic 720p, {args.n} mosaics (H.264 / JPEG alternating): {n_hit}/{args.n} found "
          f"({100 * n_hit / args.n:.0f} %); median best IoU {np.median(ious):.3f}; false alarms {fa}")
    print("  by kind: " + ", ".join(f"{k} {h}/{n}" for k, (h, n) in hits.items())
          + f"; mosaics < 96 px: {small[0]}/{small[1]}")
    clean_fa = clean_n = 0
    for _ in range(10):
        r, tw, tc = timed(h264_roundtrip(scene(rng)))
        wall.append(tw)
        cpu.append(tc)
        clean_fa += len(r)
        clean_n += 1
    print(f"  clean synthetic scenes: {clean_fa} false alarms in {clean_n} frames")
    print(f"speed 720p: wall median {1000 * np.median(wall):.1f} ms (p90 {1000 * np.quantile(wall, 0.9):.1f}), "
          f"CPU median {1000 * np.median(cpu):.1f} ms (p90 {1000 * np.quantile(cpu, 0.9):.1f})")
    small = {}
    with tempfile.TemporaryDirectory() as tmp:
        for (w, h), (bw, bh), n in (((360, 288), (120, 200), 16), ((320, 240), (102, 138), 8)):
            grids, images = [], []
            for i, f in enumerate(synthetic_face_frames(10, (w, h), seed=1)):
                cx, cy = w // 2 - 15 + 3 * i, h // 2 + 6
                grids.append(grid_from_blocks((cx - bw // 2, cy - bh // 2, cx + bw - bw // 2, cy + bh - bh // 2), n))
                images.append(apply_mosaic(f, grids[-1]))
            for crf in (18, 23):
                path = os.path.join(tmp, f"{w}_{crf}.mp4")
                write_test_clip(path, images, options=EncodeOptions(crf=crf, preset="ultrafast"))
                small[f"{w}x{h} crf {crf}"] = sum(judge(locate_mosaics(fr.image), grid, fr.image.shape)[0]
                                                  for fr, grid in zip(read_frames(path), grids))
    print("small frames, per-frame recall: " + ", ".join(f"{k} {v}/10" for k, v in small.items()))
    if args.clips:
        whole = [0, 0]
        clean = [0, 0]
        for clip in collect_inputs([args.clips])[:: args.clip_every]:
            img = next(read_frames(clip.path)).image
            clean[0] += len(locate_mosaics(img))
            clean[1] += 1
            side = min(img.shape[:2])
            sq = img[:side, :side]
            for size, n in [(128, 16), (128, 8), (256, 16), (None, 16)]:
                im = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA) if size else img
                grid = grid_from_blocks((0, 0, im.shape[1], im.shape[0]), n)
                r = locate_mosaics(h264_roundtrip(apply_mosaic(im, grid)))
                whole[0] += judge(r, grid, im.shape)[0]
                whole[1] += 1
        print(f"whole-frame mosaics (face crops): {whole[0]}/{whole[1]} found; "
              f"clean clip frames: {clean[0]} false alarms in {clean[1]} frames")


if __name__ == "__main__":
    main()
