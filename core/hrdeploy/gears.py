"""Size gears chosen from the data: the set of at most N static input sizes that minimises the
padded pixels a static-shape compiler (Ascend ``--dynamic_dims``, one Sophon stage or VastAI
build per size) spends on a dataset.

Input: each image's *required* network input size (H, W), i.e. what the model's preprocessing
makes of it without gears (:meth:`hrdeploy.model.ModelSpec.network_size`). Runtime rule (the
Ascend ModelZoo policy that gear-snapping pipelines implement): a landscape or square size
(W >= H) is served by a gear of the same height, a portrait one (W < H) by a gear of the same
width; the smallest such gear whose long side holds the image's, else the largest (the long
side is then cropped symmetrically, the short side keeps its zoom); no such gear at all = the
image is refused. So sizes fall on *chains*: (orientation, fixed short side), varying long side.

Exactness. Write a chain's distinct candidate long sides g_1 < ... < g_p (the images' long sides
capped at ``max_side`` and rounded up to ``align``). Every feasible gear set must hold each
image (an image longer than the cap goes to the cap gear and is cropped), so a chain's largest
gear is g_p; an image is served by the smallest chosen gear >= its long side, so a set of k
gears cuts g_1..g_p into k consecutive runs, each served by its top value, and its padded
pixels are a sum over runs. Gears between candidates are never better (lowering a gear to the
largest candidate below it keeps every assignment and removes padding), so restricting to
candidates loses nothing, and the O(p^2 k) dynamic programme over "the last run ends at j"
enumerates every run decomposition: it is exact, not a heuristic. Chains are independent: an
image only ever uses gears of its own chain, and the padded pixels add up over chains, so the
best split of the total budget is an exact knapsack over the chains' cost-vs-gears curves.
The one gear that lies on two chains is the square (s, s) (landscape chain of height s and
portrait chain of width s). Portrait images have H > W, so their long side exceeds s and the
square can serve them only as a chain's largest gear, which the coverage constraint rules out
(``max_side`` must exceed every short side): the square counts in the landscape chain alone
and is never counted twice. tests/test_gears.py checks the result against brute force over
every subset of every aligned size on both chains.

numpy only; :func:`image_sizes` reads sizes from a COCO annotation or image headers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import UserError

Size = tuple[int, int]          # (H, W)
LANDSCAPE, PORTRAIT = "landscape", "portrait"


def chain_of(size: Size) -> tuple[str, int, int]:
    """(orientation, fixed short side, long side) of a required size; squares are landscape,
    as DEKR's resize (``w >= h`` branch) treats them."""
    h, w = int(size[0]), int(size[1])
    return (LANDSCAPE, h, w) if w >= h else (PORTRAIT, w, h)


def gear_size(orientation: str, fixed: int, long: int) -> Size:
    return (fixed, long) if orientation == LANDSCAPE else (long, fixed)


def assign(sizes: Sequence[Size], gears: Sequence[Size]) -> list[int | None]:
    """The gear index each size runs at under the runtime rule (module doc); None = refused
    (no gear shares the image's fixed side)."""
    out: list[int | None] = []
    for size in sizes:
        orient, fixed, long = chain_of(size)
        # the same lookup as the pipeline: gears with the image's fixed side, keyed by their other side
        cands = sorted((g[1] if orient == LANDSCAPE else g[0], i) for i, g in enumerate(gears)
                       if int(g[0] if orient == LANDSCAPE else g[1]) == fixed)
        if not cands:
            out.append(None)
            continue
        fit = [i for glong, i in cands if glong >= long]
        out.append(fit[0] if fit else cands[-1][1])
    return out


def evaluate_gears(sizes: Sequence[Size], gears: Sequence[Size]) -> dict[str, Any]:
    """Per gear and in total: images, padded pixels (gear area minus the part of the image it
    holds), compute pixels (the gear's area per image: what the chip computes), cropped images
    (long side beyond the largest gear) and refused images (no gear on their chain)."""
    gears = [(int(g[0]), int(g[1])) for g in gears]
    where = assign(sizes, gears)
    n = len(sizes)
    rows = [{"gear": list(g), "images": 0, "padded_pixels": 0, "compute_pixels": 0, "cropped_images": 0}
            for g in gears]
    refused = 0
    for (h, w), gi in zip(sizes, where):
        if gi is None:
            refused += 1
            continue
        gh, gw = gears[gi]
        held = min(h, gh) * min(w, gw)
        r = rows[gi]
        r["images"] += 1
        r["compute_pixels"] += gh * gw
        r["padded_pixels"] += gh * gw - held
        r["cropped_images"] += int(h > gh or w > gw)
    for r in rows:
        r["share"] = r["images"] / n if n else 0.0
        r["padded_share"] = r["padded_pixels"] / r["compute_pixels"] if r["compute_pixels"] else 0.0
    padded = sum(r["padded_pixels"] for r in rows)
    compute = sum(r["compute_pixels"] for r in rows)
    return {"gears": [list(g) for g in gears], "per_gear": rows, "padded_pixels": padded,
            "compute_pixels": compute, "padded_share": padded / compute if compute else 0.0,
            "cropped_images": sum(r["cropped_images"] for r in rows), "refused_images": refused}


@dataclass(frozen=True)
class Chain:
    orientation: str
    fixed: int
    values: tuple[int, ...]     # distinct candidate long sides, ascending
    counts: tuple[int, ...]     # images whose (capped, aligned) long side is each value
    sums: tuple[int, ...]       # the sum of those images' capped long sides

    def curve(self, budget: int) -> list[tuple[int, tuple[int, ...]] | None]:
        """``curve[k]`` = (least padded pixels, gear long sides) with exactly k gears, k = 0..budget
        (None when k gears are impossible: k = 0 or k > candidates). Exact DP (module doc)."""
        p = len(self.values)
        g = np.asarray(self.values, dtype=np.int64)
        cn = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        cs = np.concatenate([[0], np.cumsum(self.sums)]).astype(np.int64)

        def cost(a: int, b: int) -> int:
            """Groups a..b (0-based, inclusive) served by gear value b."""
            return int(self.fixed * (g[b] * (cn[b + 1] - cn[a]) - (cs[b + 1] - cs[a])))

        inf = None
        # f[k][b]: least cost of groups 0..b with k gears, the largest at b; back[k][b]: previous end
        f: list[list[int | None]] = [[inf] * p for _ in range(budget + 1)]
        back: list[list[int]] = [[-1] * p for _ in range(budget + 1)]
        for b in range(p):
            if budget >= 1:
                f[1][b] = cost(0, b)
        for k in range(2, budget + 1):
            for b in range(k - 1, p):
                best, arg = None, -1
                for a in range(k - 2, b):
                    prev = f[k - 1][a]
                    if prev is None:
                        continue
                    c = prev + cost(a + 1, b)
                    if best is None or c < best:
                        best, arg = c, a
                f[k][b], back[k][b] = best, arg
        out: list[tuple[int, tuple[int, ...]] | None] = [None] * (budget + 1)
        for k in range(1, budget + 1):
            if f[k][p - 1] is None:
                continue
            chosen, b, kk = [], p - 1, k
            while kk >= 1:
                chosen.append(self.values[b])
                b, kk = back[kk][b], kk - 1
            out[k] = (int(f[k][p - 1]), tuple(sorted(chosen)))
        return out


def _align_up(v: int, align: int) -> int:
    return -(-int(v) // align) * align


def build_chains(sizes: Sequence[Size], align: int = 64, max_side: int = 1024) -> list[Chain]:
    """Group the required sizes into chains with their candidate long sides (module doc)."""
    cap = int(max_side) // int(align) * int(align)
    groups: dict[tuple[str, int], dict[int, list[int]]] = {}
    for size in sizes:
        orient, fixed, long = chain_of(size)
        if cap <= fixed:
            raise UserError(f"--max-side {max_side} (aligned to {align}: {cap}) leaves no room above the short "
                            f"side {fixed}: every gear would be a square that crops the images",
                            f"give --max-side above {fixed}")
        capped = min(long, cap)
        value = min(_align_up(capped, align), cap)
        groups.setdefault((orient, fixed), {}).setdefault(value, []).append(capped)
    chains = []
    for (orient, fixed), by_value in sorted(groups.items()):
        values = tuple(sorted(by_value))
        chains.append(Chain(orient, fixed, values, tuple(len(by_value[v]) for v in values),
                            tuple(sum(by_value[v]) for v in values)))
    return chains


def choose_gears(sizes: Sequence[Size], budget: int = 5, align: int = 64, max_side: int = 1024) -> dict[str, Any]:
    """The gear set of at most ``budget`` gears with the fewest padded pixels over ``sizes``
    (exact; module doc). Returns ``gears`` ((H, W), sorted), the optimum ``padded_pixels`` and
    each chain's chosen long sides."""
    if isinstance(budget, bool) or int(budget) < 1:
        raise UserError(f"--budget must be at least 1 gear, got {budget}")
    if int(align) < 1:
        raise UserError(f"--align must be a positive number of pixels, got {align}")
    if not sizes:
        raise UserError("no images to choose size gears from", "check --data: it lists no images")
    budget = int(budget)
    chains = build_chains(sizes, align, max_side)
    if budget < len(chains):
        raise UserError(f"--budget {budget} is fewer than the {len(chains)} size chains in the data "
                        "(each orientation and short side needs a gear of its own): "
                        + ", ".join(f"{c.orientation} {c.fixed}" for c in chains),
                        f"give --budget {len(chains)} or more")
    curves = [c.curve(min(budget, len(c.values))) for c in chains]
    # knapsack over chains: best[b] = (cost, picks per chain) using exactly b gears so far
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}
    for curve in curves:
        nxt: dict[int, tuple[int, tuple[int, ...]]] = {}
        for used, (cost, picks) in best.items():
            for k in range(1, len(curve)):
                if curve[k] is None or used + k > budget:
                    continue
                total = cost + curve[k][0]
                if used + k not in nxt or total < nxt[used + k][0]:
                    nxt[used + k] = (total, picks + (k,))
        best = nxt
    # fewest gears among the optimal totals: a gear that saves nothing is not worth compiling
    cost, picks = min(best.values(), key=lambda v: (v[0], sum(v[1])))
    gears: list[Size] = []
    per_chain = []
    for chain, curve, k in zip(chains, curves, picks):
        longs = curve[k][1]
        per_chain.append({"orientation": chain.orientation, "fixed": chain.fixed, "images": sum(chain.counts),
                          "candidates": list(chain.values), "gears": len(longs), "padded_pixels": curve[k][0]})
        gears.extend(gear_size(chain.orientation, chain.fixed, v) for v in longs)
    gears = sorted(set(gears))
    return {"gears": gears, "padded_pixels": int(cost), "chains": per_chain}


def one_gear_per_chain(sizes: Sequence[Size], align: int = 64, max_side: int = 1024) -> list[Size]:
    """The smallest single gear that holds every image of each chain (the cap beyond it)."""
    return sorted(gear_size(c.orientation, c.fixed, c.values[-1]) for c in build_chains(sizes, align, max_side))


def saving(baseline: int, chosen: int) -> float | None:
    """Fraction of ``baseline`` that ``chosen`` saves (None when the baseline is 0)."""
    return (baseline - chosen) / baseline if baseline else None


def gear_report(sizes: Sequence[Size], budget: int = 5, align: int = 64, max_side: int = 1024,
                seed_gears: Iterable[Size] = ()) -> dict[str, Any]:
    """The chosen set evaluated per gear, against ``seed_gears`` (the variant's current gears)
    and one gear per chain: the body of ``hrdeploy gears``' JSON."""
    sizes = [(int(h), int(w)) for h, w in sizes]
    chosen = choose_gears(sizes, budget, align, max_side)
    ev = evaluate_gears(sizes, chosen["gears"])
    if ev["padded_pixels"] != chosen["padded_pixels"] or ev["refused_images"]:
        # the DP and the runtime rule must agree, or the figures below describe another policy
        raise RuntimeError(f"gear DP ({chosen['padded_pixels']}) disagrees with the runtime rule ({ev['padded_pixels']})")
    baselines = {}
    for name, gears in (("seed", [tuple(g) for g in seed_gears]),
                        ("one_gear", one_gear_per_chain(sizes, align, max_side))):
        if not gears:
            continue
        b = evaluate_gears(sizes, gears)
        b["padded_saving"] = saving(b["padded_pixels"], ev["padded_pixels"]) if not b["refused_images"] else None
        b["compute_saving"] = saving(b["compute_pixels"], ev["compute_pixels"]) if not b["refused_images"] else None
        baselines[name] = b
    return {"gears": [list(g) for g in chosen["gears"]], "budget": int(budget), "align": int(align),
            "max_side": int(max_side), "images": len(sizes), "per_gear": ev["per_gear"],
            "padded_pixels": ev["padded_pixels"], "compute_pixels": ev["compute_pixels"],
            "padded_share": ev["padded_share"], "cropped_images": ev["cropped_images"],
            "required_pixels": int(sum(h * w for h, w in sizes)), "chains": chosen["chains"],
            "exact": True, "baselines": baselines}


# -- image sizes from a dataset, without decoding ------------------------------------------------

def image_sizes(kind: str, path: Path) -> tuple[list[Size], dict[str, Any]]:
    """(H, W) of every image of ``--data KIND:PATH``: a COCO annotation's ``images[].height/width``
    (found as the COCO reader finds it), else the headers of the image files (PIL reads only the
    header). Returns the sizes and a description of where they came from."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"dataset path not found: {path}")
    if kind == "coco":
        from .tasks.pose.coco import find_annotation_file

        try:
            ann = find_annotation_file(path)
        except UserError:
            ann = None
        if ann is not None:
            try:
                doc = json.loads(Path(ann).read_text())
                sizes = [(int(im["height"]), int(im["width"])) for im in doc.get("images", [])]
            except (ValueError, KeyError, TypeError) as e:
                raise UserError(f"cannot read image sizes from {ann}: {e}",
                                "COCO annotations list images[] with height and width") from None
            if not sizes:
                raise UserError(f"{ann} lists no images", "check --data")
            return sizes, {"kind": kind, "path": str(path), "source": "annotation images[].height/width",
                           "file": str(ann)}
    from PIL import Image

    from .io import list_images

    files = list_images(path) if path.is_dir() else [path]
    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:       # lazy: the header only, no pixel decode
                w, h = im.size
        except OSError as e:
            raise UserError(f"cannot read the image header of {f}: {e}") from None
        sizes.append((int(h), int(w)))
    if not sizes:
        raise UserError(f"no images under {path}", "check --data")
    return sizes, {"kind": kind, "path": str(path), "source": "image file headers", "files": len(sizes)}


# -- the model's side: what ``hrdeploy gears`` runs ----------------------------------------------

def model_gear_report(spec: Any, variant: Any, kind: str, path: Path, budget: int = 5, align: int = 64,
                      max_side: int = 1024) -> dict[str, Any]:
    """Required sizes from ``spec.network_size`` over the dataset's image sizes, then
    :func:`gear_report` against the variant's current gears: the JSON ``convert --gears`` takes
    (``gears`` is a list of (H, W))."""
    label = f"{spec.name}/{variant.name}"
    fixed = variant.input.fixed_size
    if fixed is not None:
        raise UserError(f"{label} has a fixed input size {fixed[0]}x{fixed[1]}: size gears do not apply")
    if kind not in getattr(spec, "dataset_kinds", ()):
        raise UserError(f"{label} reads no {kind!r} datasets",
                        "supported: " + (", ".join(spec.dataset_kinds) or "none"))
    if isinstance(budget, bool) or int(budget) < 1:
        raise UserError(f"--budget must be at least 1 gear, got {budget}")
    sizes, data = image_sizes(kind, path)
    required = []
    for h, w in sizes:
        size = spec.network_size(variant, h, w)
        if size is None:
            raise UserError(f"{label} does not describe its resize policy (ModelSpec.network_size): "
                            "gears cannot be chosen for it")
        required.append((int(size[0]), int(size[1])))
    report = gear_report(required, budget, align, max_side, seed_gears=variant.input.gears)
    return {"model": spec.name, "variant": variant.name, **report, "data": data}


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Images per gear and the padded share of each gear's compute, chosen set vs the seed's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [("chosen", report)] + [(k, v) for k, v in report["baselines"].items()]
    fig, axes = plt.subplots(len(sets), 1, figsize=(8, 2.6 * len(sets)), squeeze=False)
    for ax, (name, rep) in zip(axes[:, 0], sets):
        rows = rep["per_gear"]
        labels = [f"{r['gear'][0]}x{r['gear'][1]}" for r in rows]
        x = np.arange(len(rows))
        ax.bar(x, [r["images"] for r in rows], color="tab:blue")
        ax.set_xticks(x, labels)
        ax.set_ylabel("images")
        for xi, r in zip(x, rows):
            ax.annotate(f"{100 * r['padded_share']:.0f}% pad", (xi, r["images"]), ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{name}: {rep['padded_pixels'] / 1e6:.1f} Mpx padded of {rep['compute_pixels'] / 1e6:.1f} Mpx computed",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
