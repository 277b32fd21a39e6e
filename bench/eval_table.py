"""One Markdown row per protocol from `depix eval` text tables (the model card's val tables).

    python bench/eval_table.py A.txt B.txt --model new --other id

A.txt, B.txt: the printed output of `depix eval ... -w NEW --name new --compare id=OTHER` (for example two
processes, each with half of the protocols). Columns: bicubic PSNR; Δ over bicubic of Gaussian smoothing, the
model, the model + evidence step (+proj), the model fed one frame (-F1), the other model and its +proj; dlib
cosine and rank-1 (bicubic / other / model); SFace cosine (bicubic / model); flicker (bicubic / model-F1 / model).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

# value columns of a method row after its name: PSNR Δ SSIM Δ SFace Δ rank-1 Δ dlib-cos Δ dlib-r1 Δ dlib-dist Δ
# flicker Δ tOF Δ (bicubic, the reference, has no Δ columns)
COL = {"psnr": 0, "sface": 4, "dlib_cos": 8, "dlib_r1": 10, "flicker": 14}
REF = {"psnr": 0, "sface": 2, "dlib_cos": 4, "dlib_r1": 5, "flicker": 7}


def read_tables(paths: list[Path]) -> list[tuple[str, dict]]:
    """(protocol, {method: [values...]}) in the order printed."""
    rows: list[tuple[str, dict]] = []
    for path in paths:
        for line in path.read_text().splitlines():
            head = re.match(r"\[(\S+)\]", line)
            parts = line.split()
            if head:
                rows.append((head.group(1), {}))
            elif rows and len(parts) >= 9 and parts[0] != "method":
                rows[-1][1][parts[0]] = parts[1:]
    return rows


def markdown(rows: list[tuple[str, dict]], model: str, other: str) -> str:
    m, o = model, other
    out = [f"| protocol | bicubic dB | gaussian Δ | {m} Δ | {m}+proj Δ | {m}-F1 Δ | {o} Δ | {o}+proj Δ | "
           f"dlib cos bicubic / {o} / {m} | dlib rank-1 bicubic / {o} / {m} | SFace cos bicubic / {m} | "
           f"flicker bicubic / {m}-F1 / {m} |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for proto, t in rows:
        ref = t["bicubic"]
        delta = [t[k][1] for k in ("gaussian", m, m + "+proj", m + "-F1", o, o + "+proj")]
        out.append(f"| {proto} | {ref[REF['psnr']]} | " + " | ".join(delta) + " | "
                   f"{ref[REF['dlib_cos']]} / {t[o][COL['dlib_cos']]} / {t[m][COL['dlib_cos']]} | "
                   f"{ref[REF['dlib_r1']]} / {t[o][COL['dlib_r1']]} / {t[m][COL['dlib_r1']]} | "
                   f"{ref[REF['sface']]} / {t[m][COL['sface']]} | "
                   f"{ref[REF['flicker']]} / {t[m + '-F1'][COL['flicker']]} / {t[m][COL['flicker']]} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tables", nargs="+", type=Path, help="saved stdout of depix eval")
    ap.add_argument("--model", default="new", help="the -w model's --name")
    ap.add_argument("--other", default="id", help="the --compare model's name")
    args = ap.parse_args()
    print(markdown(read_tables(args.tables), args.model, args.other))


if __name__ == "__main__":
    main()
