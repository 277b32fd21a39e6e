"""Summarise a clips CSV (file, identity, split, frames, origin, footage_terms) as Markdown for the model card.

    python scripts/data_card.py ../shared/data/clips.csv [--index crops/index.json] [--faces faces.csv]

--faces adds the still head crops that `depix train --stills` uses (after its black-border filter).
"""

import argparse
import csv
import json
from collections import Counter, defaultdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--index", help="index.json of the `depix prepare` export, for track and crop counts")
    ap.add_argument("--faces", help="faces.csv of the still head crops (depix train --stills)")
    args = ap.parse_args()
    rows = list(csv.DictReader(open(args.csv, newline="")))
    by_split: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_split[r["split"]].append(r)
    print("| split | clips | people | frames | sources |")
    print("| --- | ---: | ---: | ---: | --- |")
    for split, rs in sorted(by_split.items(), key=lambda kv: kv[0] != "train"):
        origins = Counter(r["origin"].split(" (")[0] for r in rs)
        src = ", ".join(f"{o} ({n})" for o, n in origins.most_common())
        people = len({r["identity"] for r in rs})
        print(f"| {split} | {len(rs)} | {people} | {sum(int(r['frames']) for r in rs)} | {src} |")
    print()
    print("| footage terms | clips |")
    print("| --- | ---: |")
    for terms, n in Counter(r["footage_terms"] for r in rows).most_common():
        print(f"| {terms} | {n} |")
    if args.index:
        idx = json.load(open(args.index))
        tracks = idx["tracks"]
        print()
        print("| export | tracks | crops |")
        print("| --- | ---: | ---: |")
        for split in sorted({t["split"] for t in tracks}, key=lambda s: s != "train"):
            ts = [t for t in tracks if t["split"] == split]
            print(f"| {split} | {len(ts)} | {sum(t['frames'] for t in ts)} |")
        for s in idx.get("skipped", []):
            print(f"\nSkipped: {s}")
    train_ids = {r["identity"] for r in by_split.get("train", [])}
    val_ids = {r["identity"] for r in by_split.get("val", [])}
    print(f"\nPeople in both train and val: {len(train_ids & val_ids)}")
    if args.faces:
        from depixcli.train.stills import MAX_BLACK_BORDER

        faces = list(csv.DictReader(open(args.faces, newline="")))
        kept = [f for f in faces if float(f.get("black_border_frac") or 0) <= MAX_BLACK_BORDER
                and f["identity"] not in val_ids]
        print(f"\nStills (black_border_frac <= {MAX_BLACK_BORDER}, val people left out): {len(kept)} of "
              f"{len(faces)} photos, {len({f['identity'] for f in kept})} people")
        print()
        print("| dataset | photos | people | terms |")
        print("| --- | ---: | ---: | --- |")
        groups: dict[str, list[dict]] = defaultdict(list)
        for f in kept:
            groups[f["dataset"]].append(f)
        for name, fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            terms = "; ".join(sorted({f["footage_terms"] for f in fs}))
            print(f"| {name} | {len(fs)} | {len({f['identity'] for f in fs})} | {terms} |")
        print(f"\nPeople in both stills and val: {len({f['identity'] for f in kept} & val_ids)}")


if __name__ == "__main__":
    main()
