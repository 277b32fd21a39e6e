"""Learning curve of `depix train` runs: validation gain over bicubic (dB, people never trained on) against hours.

    python bench/learning_curve.py runs/default/log.jsonl [runs/nostills/log.jsonl ...] [--markdown]

Reads the validation records of each run's log.jsonl (written every --val-minutes / --val-every) and prints,
per record: training hours (wall clock of the run, pauses included), step, samples seen (summed over the
step records: steps x stacks per step, which doubles when two torchrun ranks train), and per protocol model
PSNR - bicubic PSNR; for the image-anchored protocols also model - the same model fed one frame (what the other
frames add). Records with the temporal validation (`val_flicker_*`) add, for paper16 and image8, the model's
flicker minus bicubic's (mean |Δoutput − Δtruth| between consecutive frames, grey levels: below 0 is steadier
than per-frame bicubic); older records leave those columns blank.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PROTOCOLS = ("paper16", "paper8", "face16", "face8", "image16", "image8")
FLICKER = ("paper16", "image8")


def curve(log: Path, batch_size: int) -> list[dict]:
    rows = []
    seen, last_step = 0, 0
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "step" in rec and "samples_per_s" in rec and "s_per_step" in rec:
            ranks = max(1, round(rec["samples_per_s"] * rec["s_per_step"] / batch_size))
            seen += max(0, rec["step"] - last_step) * batch_size * ranks
            last_step = rec["step"]
        if "val_gain_mean" not in rec:
            continue
        row = {"hours": rec["time_s"] / 3600, "step": rec["step"], "samples": seen}
        for p in PROTOCOLS:
            row[p] = rec[f"val_psnr_{p}_model"] - rec[f"val_psnr_{p}_bicubic"]
            if f"val_psnr_{p}_single" in rec:
                row[p + " vs F1"] = rec[f"val_psnr_{p}_model"] - rec[f"val_psnr_{p}_single"]
        row["mean"] = rec["val_gain_mean"]
        for p in FLICKER:
            if f"val_flicker_{p}_model" in rec:
                row[p + " flicker"] = rec[f"val_flicker_{p}_model"] - rec[f"val_flicker_{p}_bicubic"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--batch-size", type=int, default=16, help="stacks per step and rank, for the samples column")
    ap.add_argument("--markdown", action="store_true", help="Markdown tables")
    args = ap.parse_args()
    for log in args.logs:
        rows = curve(log, args.batch_size)
        cols = ["hours", "step", "samples"]
        for r in rows:
            cols += [c for c in r if c not in cols]
        sep = " | " if args.markdown else "  "
        print(f"\n{log} ({len(rows)} validations; dB over bicubic of the true block values)")
        if not rows:
            continue
        print(("| " if args.markdown else "") + sep.join(f"{c:>9}" for c in cols) + (" |" if args.markdown else ""))
        if args.markdown:
            print("|" + "|".join("---:" for _ in cols) + "|")
        for r in rows:
            vals = [f"{r['hours']:.2f}", str(r["step"]), str(r["samples"])]
            vals += [f"{r[c]:+.2f}" if c in r else "" for c in cols[3:]]
            print(("| " if args.markdown else "") + sep.join(f"{v:>9}" for v in vals) + (" |" if args.markdown else ""))


if __name__ == "__main__":
    main()
