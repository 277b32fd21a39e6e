"""Measure issue 10's "Done when": which mosaics does `depix audit` judge to hold, on people never trained on?

    python bench/bench_audit.py ../shared/data/clips.csv -o OUTDIR [--split val] [--weights W] \\
        [--ways blocks16 blocks8 size10 secure] [--max-frames 100] [--frames 30] [--limit N] \\
        [--distractors ../shared/data/faces.csv [--distractor-count 1000]] [--no-dlib] [--no-recommend] \\
        [--prepare | --report-only]

Run from the repository root with depix importable (`pip install -e . --no-deps`, or `PYTHONPATH=.`).

1. Clips: the CSV rows of `--split` (default val; people the default model never saw), or video files.
2. Re-identification gallery: per identity of the clips, the middle frame of its first clip
   (`OUTDIR/gallery/`), plus with `--distractors` one still photo each of `--distractor-count` other people
   (a face-photo CSV with columns file, identity, black_border_frac, files relative to the CSV's folder:
   distinct identities with black_border_frac <= `--max-border`, drawn with `--seed`, names matching a
   clip identity left out; the photos are read in place, never copied). Auditing a clip, the gallery holds
   the clip's own face track(s), the photos of every OTHER clip identity and the distractors, so each
   person is in it once and chance rank 1 is 1 / gallery size: 1 / 34 with the 34 val people alone (a
   clip that holds then "leaks" by a chance rank 1 in 1 of 34 tries per attack), ~1 / 1034 with 1000
   distractors. The embeddings are kept in `OUTDIR/gallery.npz` (reused while the photo list is the same).
3. Per clip: its first `--max-frames` frames (`OUTDIR/clips/<clip>/clean.mp4`), pixelated four ways with
   `depix pixelate`'s library: `blocks16` / `blocks8` (N x N blocks anchored to the face box), `size10`
   (10 px blocks anchored to the image, `--block-size 10`), `secure` (`--secure`).
4. `audit.audit_video` of each against the clean cut, `--frames` frames scored per track, with the model
   `depix run` uses (or `--weights`). Per clip and way: `OUTDIR/clips/<clip>/<way>.json` and `.png`.

Prints the table (per way: clips, verdicts, median over tracks of the per-track median cosine of
(a) anonymised, (b) smoothed, (c) reconstructed and [a featureless face of the same colour], mean share of
frames above 0.363, re-identification rank 1 rate of (c), of the best of (a)-(c), [of the featureless face],
median rank of (c) and gallery size, mosaic analysis), then, when dlib is installed (`--no-dlib`: not used),
dlib's table on the same tracks and gallery (median over tracks of the per-track median descriptor distance
of (a)-(c) [featureless], mean share of frames matched under 0.6, rank 1 rate of (c) and of the best attack
[featureless], tracks dlib calls leaks, tracks where dlib's call and SFace's identity verdict disagree), and
writes them to `OUTDIR/audit.md`; all rows go to
`OUTDIR/audit.json`. Clips already audited (their JSON exists) are not redone, and pixelated cuts already
there are reused: the bench resumes. `--prepare` only cuts, pixelates and embeds the gallery (no model
needed); `--report-only` only tabulates the JSONs already written (e.g. of shards stopped at a deadline).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

WAYS = ("blocks16", "blocks8", "size10", "secure")
DEFAULT_MAX_FRAMES = 100  # frames kept of each clip
DEFAULT_FRAMES = 30  # frames scored per face track
BLOCK_SIZE_PX = 10  # px, the image-anchored way's block size (as bench_restore.py's size10)
DEFAULT_DISTRACTORS = 1000  # identities added to the re-identification gallery with --distractors
DEFAULT_MAX_BORDER = 0.1  # share of near-black pixels (LFW alignment-warp borders) a distractor photo may have


def pixelate_config(way: str):
    from depixcli.pixelate import PixelateConfig
    from depixcli.secure import SecureMosaic

    return {
        "blocks16": PixelateConfig(blocks=16),
        "blocks8": PixelateConfig(blocks=8),
        "size10": PixelateConfig(blocks=None, block_size=BLOCK_SIZE_PX),
        "secure": PixelateConfig(blocks=None, secure=SecureMosaic()),
    }[way]


def cut_clip(src: Path, dst: Path, max_frames: int) -> None:
    """The first `max_frames` frames of `src` -> `dst` (near-lossless H.264)."""
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import probe, read_frames

    info = probe(src)
    with VideoWriter(dst, info, EncodeOptions(crf=14)) as w:
        for frame in read_frames(src):
            if frame.index >= max_frames:
                break
            w.write(frame.image, frame.pts)


class CachedDetector:
    """A face detector that remembers its answer per frame (by content): the clean cut of a clip is
    detected once although `depix pixelate` and `depix audit` both run the detector on it, once per way."""

    def __init__(self, detector):
        self.detector = detector
        self.cache: dict[bytes, list] = {}

    def detect(self, frame: np.ndarray) -> list:
        import hashlib

        key = hashlib.blake2b(np.ascontiguousarray(frame).data, digest_size=16).digest()
        if key not in self.cache:
            self.cache[key] = self.detector.detect(frame)
        return self.cache[key]


def gallery_images(clips, out: Path) -> dict[str, Path]:
    """One photo per identity: the middle frame of its first clip, as PNG in `out`."""
    import cv2

    from depixcli.io.video import probe, read_frames

    out.mkdir(parents=True, exist_ok=True)
    photos = {}
    for c in clips:
        if c.identity in photos:
            continue
        path = out / f"{c.identity}.png"
        if not path.exists():
            middle = probe(c.path).frames // 2
            image = None
            for frame in read_frames(c.path):
                image = frame.image
                if frame.index >= middle:
                    break
            cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
        photos[c.identity] = path
    return photos


def _name_key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def distractor_photos(csv_path: Path, count: int, max_border: float, seed: int,
                      exclude=()) -> list[tuple[str, Path]]:
    """`(identity, photo)` of `count` distinct identities of a face-photo CSV, drawn with `seed` among those
    with a photo of black_border_frac <= `max_border` (each: its first such file by name). Identities whose
    name, without a dataset prefix like `lfw_`, matches one of `exclude` (letters and digits, any case) are
    left out: a clip's own person must not come back as a distractor."""
    import csv

    with open(csv_path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["file"])
    skip = {_name_key(e) for e in exclude}
    first: dict[str, Path] = {}
    for r in rows:
        ident = r["identity"]
        if float(r["black_border_frac"]) > max_border or {_name_key(ident), _name_key(ident.split("_", 1)[-1])} & skip:
            continue
        first.setdefault(ident, Path(csv_path).parent / r["file"])
    names = sorted(first)
    if count > len(names):
        raise SystemExit(f"{csv_path}: only {len(names)} identities with black_border_frac <= {max_border}, "
                         f"{count} asked")
    pick = np.sort(np.random.default_rng(seed).choice(len(names), size=count, replace=False))
    return [(names[i], first[names[i]]) for i in pick]


def gallery_embeddings(cache: Path, entries: list[tuple[str, Path]], identity, detector, dlib=None):
    """`(owners, audit.plan.GalleryPhotos)` of `(identity, photo)` entries (SFace embeddings, and dlib
    descriptors when `dlib` is given); photos without a face are left out. Kept in `cache` (.npz) and reused
    while the list of photos is the same (and holds dlib's descriptors when they are asked for)."""
    from depixcli.audit.plan import GalleryPhotos, photo_embeddings

    files = [str(p) for _, p in entries]
    if cache.exists():
        z = np.load(cache)
        if list(z["files"]) == files and (dlib is None or "dlib" in z.files):
            return list(z["owners"]), GalleryPhotos(list(z["names"]), z["feats"], [str(n) for n in z["notes"]],
                                                    z["dlib"] if dlib is not None else None)
    photos = photo_embeddings([p for _, p in entries], identity, detector, dlib)
    owner = {Path(p).name: ident for ident, p in entries}
    owners = [owner[n] for n in photos.names]
    tmp = cache.with_name(f".{cache.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, files=np.array(files), names=np.array(photos.names), owners=np.array(owners), feats=photos.sface,
                 notes=np.array(photos.notes, dtype=str), **({"dlib": photos.dlib} if photos.dlib is not None else {}))
    os.replace(tmp, cache)
    return owners, photos


def summarise(rows: list[dict], way: str) -> dict:
    """One table row: the tracks of every clip audited `way`."""
    mine = [r for r in rows if r["way"] == way]
    tracks = [t for r in mine for t in r["tracks"]]
    if not tracks:
        return {"way": way, "clips": 0}
    attacks = ("anonymised", "smoothed", "reconstructed")
    med = {a: float(np.median([t["scores"][a]["median"] for t in tracks])) for a in attacks}
    above = {a: float(np.mean([t["scores"][a]["above"] for t in tracks])) for a in med}
    ranks = np.array([t["scores"]["reconstructed"]["rank"] for t in tracks])
    best = np.array([min(t["scores"][a]["rank"] for a in med) for t in tracks])
    gallery = [t["scores"]["reconstructed"]["gallery"] for t in tracks]
    m = [t["mosaic"] for t in tracks]
    blocks = [x["face_blocks"] for x in m if x["face_blocks"] is not None]
    return {
        "way": way, "clips": len(mine), "tracks": len(tracks),
        "holds": sum(r["verdict"] == "holds" for r in mine), "leaks": sum(r["verdict"] == "leaks" for r in mine),
        "median_cosine": med, "share_above": above,
        "rank1_reconstructed": float(np.mean(ranks == 1)), "median_rank_reconstructed": float(np.median(ranks)),
        "rank1_any": float(np.mean(best == 1)), "gallery": int(np.median(gallery)),
        "chance_rank1": float(np.mean([1 / g for g in gallery])),
        "max_reconstructed_median": float(max(t["scores"]["reconstructed"]["median"] for t in tracks)),
        "featureless": float(np.median([t["featureless"] for t in tracks])),
        "rank1_featureless": float(np.mean([t["featureless_rank"] == 1 for t in tracks])),
        "face_blocks": float(np.median(blocks)) if blocks else None,
        "phases": float(np.median([x["phases"] for x in m])),
        "anchor": max({x["anchor"] for x in m}, key=[x["anchor"] for x in m].count),
        "values": max({x["values"] for x in m}, key=[x["values"] for x in m].count),
        "dlib": summarise_dlib(tracks),
    }


def summarise_dlib(tracks: list[dict]) -> dict | None:
    """dlib's figures of the tracks (None when the audits ran without dlib): median over tracks of the per-track
    median distance and featureless distance, mean share of frames matched, rank-1 rates, judges' agreement."""
    tracks = [t for t in tracks if t.get("dlib")]
    if not tracks:
        return None
    attacks = ("anonymised", "smoothed", "reconstructed")
    ranks = np.array([t["dlib"]["reconstructed"]["rank"] for t in tracks])
    best = np.array([min(t["dlib"][a]["rank"] for a in attacks) for t in tracks])
    judged = [t for t in tracks if t["judges_agree"] is not None]
    return {
        "tracks": len(tracks),
        "median_distance": {a: float(np.median([t["dlib"][a]["median"] for t in tracks])) for a in attacks},
        "share_matched": {a: float(np.mean([t["dlib"][a]["matched"] for t in tracks])) for a in attacks},
        "featureless": float(np.median([t["dlib_featureless"] for t in tracks])),
        "rank1_reconstructed": float(np.mean(ranks == 1)), "rank1_any": float(np.mean(best == 1)),
        "rank1_featureless": float(np.mean([t["dlib_featureless_rank"] == 1 for t in tracks])),
        "leaks": sum(t["dlib_verdict"] == "leaks" for t in tracks),
        "disagree": sum(not t["judges_agree"] for t in judged), "judged": len(judged),
    }


def format_table(summary: list[dict], model: str, gallery: str = "") -> str:
    lines = [
        f"model: {model}",
        *([f"re-identification gallery: {gallery}"] if gallery else []),
        "",
        "| pixelation | clips | holds / leaks | median cosine (a) / (b) / (c) [blank] | frames > 0.363 (a) / (b) / (c) "
        "| re-id rank 1 (c) / any [blank], chance | median rank (c) of gallery | blocks across face | grid | phases "
        "| values |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary:
        if not s["clips"]:
            continue
        c, a = s["median_cosine"], s["share_above"]
        lines.append(
            f"| {s['way']} | {s['clips']} | {s['holds']} / {s['leaks']} "
            f"| {c['anonymised']:.2f} / {c['smoothed']:.2f} / {c['reconstructed']:.2f} [{s['featureless']:.2f}] "
            f"| {a['anonymised']:.0%} / {a['smoothed']:.0%} / {a['reconstructed']:.0%} "
            f"| {s['rank1_reconstructed']:.0%} / {s['rank1_any']:.0%} [{s['rank1_featureless']:.0%}], "
            f"{s['chance_rank1']:.1%} "
            f"| {s['median_rank_reconstructed']:.0f} of {s['gallery']} "
            f"| {s['face_blocks'] if s['face_blocks'] is not None else '-'} | {s['anchor']} | {s['phases']:.0f} "
            f"| {s['values']} |")
    rows = [s for s in summary if s["clips"] and s.get("dlib")]
    if rows:
        lines += [
            "",
            "dlib's ResNet descriptor (the identity judge no depix model trains on), same tracks and gallery:",
            "",
            "| pixelation | tracks | median distance (a) / (b) / (c) [blank] | frames matched < 0.6 (a) / (b) / (c) "
            "| re-id rank 1 (c) / any [blank] | dlib leaks | disagree with SFace |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for s in rows:
            d = s["dlib"]
            m, a = d["median_distance"], d["share_matched"]
            lines.append(
                f"| {s['way']} | {d['tracks']} "
                f"| {m['anonymised']:.2f} / {m['smoothed']:.2f} / {m['reconstructed']:.2f} [{d['featureless']:.2f}] "
                f"| {a['anonymised']:.0%} / {a['smoothed']:.0%} / {a['reconstructed']:.0%} "
                f"| {d['rank1_reconstructed']:.0%} / {d['rank1_any']:.0%} [{d['rank1_featureless']:.0%}] "
                f"| {d['leaks']} | {d['disagree']} of {d['judged']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="clips.csv (rows of --split are used) or video files")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output directory (resumable)")
    ap.add_argument("--split", default="val", help="CSV split to audit")
    ap.add_argument("-w", "--weights", default=None, help="model (default: the one `depix run` uses)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ways", nargs="+", default=list(WAYS), choices=WAYS)
    ap.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="frames kept of each clip")
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames scored per face track")
    ap.add_argument("--limit", type=int, default=0, help="audit only the first N clips (0: all)")
    ap.add_argument("--every", type=int, default=1, help="audit every k-th clip (a spread-out subset)")
    ap.add_argument("--only", nargs="+", default=None, metavar="STEM", help="audit only these clips (file stems)")
    ap.add_argument("--shard", default="0/1", help="K/N: audit clips K, K+N, ... of the selection (parallel runs)")
    ap.add_argument("--distractors", type=Path, default=None,
                    help="face-photo CSV (file, identity, black_border_frac) of other people for the gallery")
    ap.add_argument("--distractor-count", type=int, default=DEFAULT_DISTRACTORS, help="distinct identities drawn")
    ap.add_argument("--max-border", type=float, default=DEFAULT_MAX_BORDER,
                    help="largest black_border_frac of a distractor photo")
    ap.add_argument("--seed", type=int, default=0, help="seed of the distractor draw")
    ap.add_argument("--prepare", action="store_true", help="only cut, pixelate and embed the gallery (no model)")
    ap.add_argument("--report-only", action="store_true", help="only tabulate the clip JSONs already written")
    ap.add_argument("--no-dlib", action="store_true", help="audit without dlib's descriptor (the second judge)")
    ap.add_argument("--no-recommend", action="store_true",
                    help="skip the audit's strength ladder (its recommendation is not in the table; saves time)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    from depixcli.dataset.inputs import collect_inputs, readable_inputs

    clips = collect_inputs(args.inputs)
    if any(c.split is not None for c in clips):
        clips = [c for c in clips if c.split == args.split]
    clips = readable_inputs(clips)
    every_clip = clips
    people = sorted({c.identity for c in clips})
    entries = [(ident, args.out / "gallery" / f"{ident}.png") for ident in people]
    if args.distractors is not None:
        entries += distractor_photos(args.distractors, args.distractor_count, args.max_border, args.seed, people)
    clips = clips[:: args.every]
    if args.limit:
        clips = clips[: args.limit]
    if args.only:
        clips = [c for c in clips if c.path.stem in args.only]
    shard, shards = (int(v) for v in args.shard.split("/"))
    clips = clips[shard::shards]
    weights = args.weights or "the default model (weights/depix-default.safetensors)"
    if args.report_only:
        rows = [json.loads(p.read_text()) for c in clips for w in args.ways
                if (p := args.out / "clips" / c.path.stem / f"{w}.json").exists()]
        weights = args.weights or (rows[0]["weights"] if rows else weights)
        return report(args, rows, clips, weights, read_gallery_note(args.out))

    from depixcli.audit.report import write_sheet
    from depixcli.audit.verdict import AuditConfig
    from depixcli.audit.video import audit_video
    from depixcli.faces.detect import load_detector
    from depixcli.audit.plan import GalleryPhotos
    from depixcli.audit.video import second_judge
    from depixcli.faces.identity import SFaceIdentity
    from depixcli.model.weights import default_weights_path
    from depixcli.pixelate import pixelate_video

    gallery_images(every_clip, args.out / "gallery")
    identity = SFaceIdentity()
    config = AuditConfig(weights=args.weights or str(default_weights_path()), frames=args.frames, quiet=args.quiet,
                         dlib=not args.no_dlib, recommend=not args.no_recommend)
    dlib = second_judge(config)
    print(dlib[1], file=sys.stderr)
    detector = load_detector(config.detector, max_side=config.max_side)
    owners, photos = gallery_embeddings(args.out / "gallery.npz", entries, identity, detector, dlib[0])
    for n in photos.notes:
        print(n, file=sys.stderr)
    n_distract = sum(o not in people for o in owners)
    note = (f"each clip's own face track(s) + one photo of each other one of the {len(people)} {args.split} "
            f"people" + (f" + {n_distract} distractor identities (one still photo each: {args.distractors.name}, "
                         f"black_border_frac <= {args.max_border}, seed {args.seed})" if args.distractors else "")
            + "; chance rank 1 = 1 / gallery size")
    (args.out / "gallery.txt").write_text(note + "\n")
    model = None
    if not args.prepare:
        from depixcli.model.reconstructor import load_reconstructor

        weights = config.weights
        model = load_reconstructor(weights, args.device)
    rows = []
    t_start = time.perf_counter()
    for i, c in enumerate(clips):
        work = args.out / "clips" / c.path.stem
        work.mkdir(parents=True, exist_ok=True)
        clean = work / "clean.mp4"
        if not clean.exists():
            tmp = work / ".clean.tmp.mp4"
            cut_clip(c.path, tmp, args.max_frames)
            os.replace(tmp, clean)
        cached = CachedDetector(detector)
        keep = [k for k, o in enumerate(owners) if o != c.identity]  # every other person, once
        gallery = GalleryPhotos([photos.names[k] for k in keep], photos.sface[keep], [],
                                None if photos.dlib is None else photos.dlib[keep])
        for way in args.ways:
            out_json = work / f"{way}.json"
            if out_json.exists():
                rows.append(json.loads(out_json.read_text()))
                continue
            t0 = time.perf_counter()
            pix = work / f"{way}.mp4"
            if not pix.exists():  # pixelation needs no model: reused from --prepare or an earlier run
                tmp = work / f".{way}.tmp.mp4"
                pixelate_video(clean, tmp, pixelate_config(way), detector=cached)
                os.replace(tmp, pix)
            t1 = time.perf_counter()
            if model is None:
                continue
            try:
                rep = audit_video(pix, clean, config, model=model, identity=identity, detector=cached,
                                  gallery=gallery, dlib=dlib)
            except Exception as exc:  # noqa: BLE001 - one clip's failure is reported, the bench goes on
                print(f"{c.path.name} {way}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            write_sheet(rep, work / f"{way}.png")
            row = {"clip": c.path.name, "identity": c.identity, "way": way, **rep.to_dict(),
                   "seconds": {"pixelate": t1 - t0, "audit": time.perf_counter() - t1}}
            row["weights"] = weights
            tmp = work / f".{way}.tmp.json"
            tmp.write_text(json.dumps(row, indent=1))
            os.replace(tmp, out_json)  # whole or absent: a shard stopped at a deadline leaves no half file
            rows.append(row)
            tr = row["tracks"]
            print(f"[{i + 1}/{len(clips)}] {c.path.name} {way}: {row['verdict']} "
                  + " ".join(f"c={t['scores']['reconstructed']['median']:.2f} "
                             f"rank={t['scores']['reconstructed']['rank']} of {t['scores']['reconstructed']['gallery']}"
                             for t in tr)
                  + f" ({time.perf_counter() - t0:.0f} s, {time.perf_counter() - t_start:.0f} s total)",
                  file=sys.stderr, flush=True)
    if model is None:
        print(f"prepared {len(clips)} clip(s) in {args.out}; gallery: {len(photos.names)} photos ({note})",
              file=sys.stderr)
        return 0
    return report(args, rows, clips, weights, note)


def read_gallery_note(out: Path) -> str:
    p = out / "gallery.txt"
    return p.read_text().strip() if p.exists() else ""


def report(args, rows: list[dict], clips, weights: str, gallery_note: str) -> int:
    """Print the table, write `audit.md` and `audit.json`."""
    summary = [summarise(rows, w) for w in args.ways]
    table = format_table(summary, weights, gallery_note)
    print(table)
    (args.out / "audit.md").write_text(table + "\n")
    (args.out / "audit.json").write_text(json.dumps({
        "summary": summary, "rows": rows, "weights": weights, "max_frames": args.max_frames, "frames": args.frames,
        "gallery": {"note": gallery_note, "distractors": str(args.distractors) if args.distractors else None,
                    "distractor_count": args.distractor_count if args.distractors else 0,
                    "max_border": args.max_border, "seed": args.seed},
        "clips": [c.path.name for c in clips]}, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
