"""Size gears for DEKR W32 on a COCO-val2017-LIKE size distribution (issue 19's "done when").

SYNTHETIC: no COCO data is on this machine. The 5000 image sizes below are generated
deterministically from the stated proportions, chosen to resemble COCO val2017 (Flickr images
stored with the long side at 640 px, landscape more common than portrait, 640x480 and 640x427
the commonest sizes, a few squares, and a tail of smaller images). They are an assumption about
COCO, not a measurement of it: run ``hrdeploy gears dekr --data coco:/data/coco`` on the real
annotation for the real figures.

    python benchmarks/gears_coco_like.py            # writes benchmarks/results/gears-2026-12-01.{json,md}
    python benchmarks/gears_coco_like.py --out DIR --stem NAME --budget 5

The selection goes through the same path as ``hrdeploy gears``: a COCO annotation (images[] with
height/width) is written to a temporary folder and read back by ``model_gear_report``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

#: (width, height, share of the 5000 images). Shares sum to 1.
COCO_LIKE = (
    # landscape, long side 640 (69 %)
    (640, 480, 0.290), (640, 427, 0.220), (640, 426, 0.040), (640, 425, 0.030), (640, 428, 0.020),
    (640, 360, 0.030), (640, 512, 0.020), (640, 640, 0.020),
    # portrait, long side 640 (24 %)
    (480, 640, 0.110), (427, 640, 0.080), (426, 640, 0.020), (425, 640, 0.015), (360, 640, 0.015),
    # the tail of smaller images (7 %: 1.5 % square, 3.5 % landscape, 2.5 % portrait)
    (500, 375, 0.020), (500, 333, 0.015), (612, 612, 0.010), (375, 500, 0.015), (333, 500, 0.010),
    (320, 240, 0.010), (256, 256, 0.010),
)
IMAGES = 5000


def coco_like_sizes(n: int = IMAGES) -> list[tuple[int, int]]:
    """(H, W) of ``n`` images in the stated proportions (largest remainders; deterministic)."""
    total = sum(p for _, _, p in COCO_LIKE)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"the shares sum to {total}, not 1")
    exact = [p * n for _, _, p in COCO_LIKE]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - counts[i], reverse=True)[:n - sum(counts)]:
        counts[i] += 1
    return [(h, w) for (w, h, _), c in zip(COCO_LIKE, counts) for _ in range(c)]


def write_annotation(root: Path, sizes: list[tuple[int, int]]) -> Path:
    """A COCO person_keypoints file listing only images[] (all ``hrdeploy gears`` reads)."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"images": [{"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "height": h, "width": w}
                      for i, (h, w) in enumerate(sizes)], "annotations": [], "categories": []}
    path = root / "annotations" / "person_keypoints_val2017.json"
    path.write_text(json.dumps(doc))
    return path


def run(budget: int = 5, variant: str = "w32") -> dict[str, Any]:
    from hrdeploy.gears import model_gear_report
    from hrdeploy.plugins import registry

    spec = registry().model("dekr")
    var = spec.variant(variant)
    with tempfile.TemporaryDirectory() as tmp:
        write_annotation(Path(tmp), coco_like_sizes())
        rep = model_gear_report(spec, var, "coco", Path(tmp), budget=budget)
    rep["data"] = {"kind": "coco", "synthetic": True,
                   "source": "benchmarks/gears_coco_like.py COCO_LIKE (stated proportions resembling "
                             "COCO val2017; not measured from COCO)",
                   "proportions": [{"width": w, "height": h, "share": p} for w, h, p in COCO_LIKE]}
    return rep


def markdown(rep: dict[str, Any]) -> str:
    def g(gears: list[list[int]]) -> str:
        return " ".join(f"{a}x{b}" for a, b in gears)

    lines = [f"# Size gears for {rep['model']}/{rep['variant']} on a COCO-val2017-like distribution", "",
             (f"**Synthetic data**: {rep['images']} image sizes from the proportions in "
              "`benchmarks/gears_coco_like.py` (chosen to resemble COCO val2017: long side 640, landscape "
              "and portrait, a tail of smaller images; not measured from COCO, which is not on this machine)."),
             "", (f"Budget {rep['budget']}, align {rep['align']}, max side {rep['max_side']}; the selection is exact "
                  "(dynamic programme, checked against brute force in tests/test_gears.py)."), "",
             "| set | gears (HxW) | padded px | compute px | padded saved | compute saved |", "|---|---|---|---|---|---|",
             f"| chosen | {g(rep['gears'])} | {rep['padded_pixels']:,} | {rep['compute_pixels']:,} | | |"]
    names = {"seed": "seed 001's five gears", "one_gear": "one gear per orientation"}
    for key, b in rep["baselines"].items():
        pct = ["-" if v is None else f"{100 * v:.1f}%" for v in (b["padded_saving"], b["compute_saving"])]
        lines.append(f"| {names.get(key, key)} | {g(b['gears'])} | {b['padded_pixels']:,} | {b['compute_pixels']:,} "
                     f"| {pct[0]} | {pct[1]} |")
    lines += ["", "Chosen gears:", "", "| gear | images | share | padded px | padded share of its compute |",
              "|---|---|---|---|---|"]
    for r in rep["per_gear"]:
        lines.append(f"| {r['gear'][0]}x{r['gear'][1]} | {r['images']} | {100 * r['share']:.1f}% | "
                     f"{r['padded_pixels']:,} | {100 * r['padded_share']:.1f}% |")
    lines += ["", "Proportions (width x height: share): "
              + ", ".join(f"{p['width']}x{p['height']}: {100 * p['share']:.1f}%" for p in rep["data"]["proportions"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=5)
    ap.add_argument("--variant", default="w32")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--stem", default="gears-2026-12-01")
    args = ap.parse_args(argv)
    rep = run(args.budget, args.variant)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.stem}.json").write_text(json.dumps(rep, indent=2) + "\n")
    md = markdown(rep)
    (args.out / f"{args.stem}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
