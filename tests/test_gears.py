"""``hrdeploy gears``: the exact gear selection (against brute force over every gear subset),
the runtime rule it models (against DEKR's own gear snapping), the command on the synthetic COCO
sets, its one-line refusals, and the COCO-like benchmark's claim (budget 5 pads less than the
seed's five gears)."""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hrdeploy.errors import UserError
from hrdeploy.gears import choose_gears, evaluate_gears, gear_report, one_gear_per_chain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gears_coco_like import COCO_LIKE, coco_like_sizes

SEED_W32 = [(512, 768), (512, 512), (768, 512), (512, 1024), (1024, 512)]


def _brute(sizes, budget, align, cap, fixed_sides):
    """The least padded pixels over every subset (<= budget) of every aligned gear on every
    chain (squares once), under the runtime rule, among the subsets that hold each image
    (an image longer than the cap may only be cropped to a cap gear)."""
    cands = set()
    for s in fixed_sides:
        for v in range(s, cap + 1):
            if v % align == 0 or v == s:
                cands.add((s, v))
                cands.add((v, s))
    cands = sorted(cands)
    best = None
    for k in range(1, budget + 1):
        for subset in itertools.combinations(cands, k):
            ev = evaluate_gears(sizes, subset)
            if ev["refused_images"]:
                continue
            ok = True
            for (h, w), gi in zip(sizes, _assigned(sizes, subset)):
                gh, gw = subset[gi]
                long, glong = (w, gw) if w >= h else (h, gh)
                if glong < min(long, cap):
                    ok = False
                    break
            if ok and (best is None or ev["padded_pixels"] < best):
                best = ev["padded_pixels"]
    return best


def _assigned(sizes, gears):
    from hrdeploy.gears import assign

    return assign(sizes, gears)


def _random_sizes(rng, fixed_sides, n, cap, aligned=True):
    sizes = []
    for _ in range(n):
        s = int(rng.choice(fixed_sides))
        long = int(rng.integers(s, cap + 129))          # some beyond the cap (cropped)
        if aligned:
            long = max(s, long // 64 * 64)
        sizes.append((s, long) if rng.random() < 0.6 else (long if long > s else s + 1, s))
    return sizes


@pytest.mark.parametrize("seed", range(12))
def test_dp_equals_brute_force_on_both_chains(seed):
    rng = np.random.default_rng(seed)
    cap, align = 640, 64
    sizes = _random_sizes(rng, [256], int(rng.integers(3, 12)), cap, aligned=seed % 2 == 0)
    budget = int(rng.integers(2, 5))
    got = choose_gears(sizes, budget=budget, align=align, max_side=cap)
    assert len(got["gears"]) <= budget
    assert got["padded_pixels"] == _brute(sizes, budget, align, cap, [256])
    # the reported optimum is what the runtime rule gives with those gears
    assert evaluate_gears(sizes, got["gears"])["padded_pixels"] == got["padded_pixels"]


@pytest.mark.parametrize("seed", range(3))
def test_dp_equals_brute_force_with_two_short_sides(seed):
    """Four chains (two short sides x two orientations): the budget split across chains is exact."""
    rng = np.random.default_rng(100 + seed)
    cap, align = 448, 64
    sizes = _random_sizes(rng, [192, 256], 9, cap)
    chains = {(w >= h, min(h, w)) for h, w in sizes}
    budget = len(chains) + 1
    got = choose_gears(sizes, budget=budget, align=align, max_side=cap)
    assert got["padded_pixels"] == _brute(sizes, budget, align, cap, [192, 256])


def test_more_budget_never_pads_more_and_one_gear_is_the_k_equals_chains_case():
    sizes = coco_like_sizes(400)
    from hrdeploy_dekr.spec import DEKRSpec
    from hrdeploy_dekr.variants import VARIANTS

    req = [DEKRSpec().network_size(VARIANTS["w32"], h, w) for h, w in sizes]
    padded = [choose_gears(req, budget=b)["padded_pixels"] for b in range(2, 9)]
    assert padded == sorted(padded, reverse=True) and padded[0] > padded[-1]
    assert choose_gears(req, budget=2)["gears"] == one_gear_per_chain(req)


def test_the_runtime_rule_is_dekrs_gear_snapping():
    """For every size of the COCO-like set, DEKR's pipeline (resize_params with the chosen gears)
    runs the image at the gear gears.assign says, and without gears at network_size."""
    from hrdeploy.gears import assign
    from hrdeploy_dekr.pipeline import resize_params
    from hrdeploy_dekr.spec import DEKRSpec
    from hrdeploy_dekr.variants import VARIANTS

    spec, var = DEKRSpec(), VARIANTS["w32"]
    raw = sorted(set(coco_like_sizes())) + [(300, 1400), (1400, 300)]      # two beyond the cap: cropped
    req = [spec.network_size(var, h, w) for h, w in raw]
    gears = choose_gears(req, budget=5)["gears"]
    for (h, w), r, gi in zip(raw, req, assign(req, gears)):
        (w0, h0), _, _ = resize_params(h, w, 512, 1.0, None)
        assert (h0, w0) == r
        (wg, hg), _, _ = resize_params(h, w, 512, 1.0, gears)
        assert (hg, wg) == tuple(gears[gi])


def test_errors_are_user_errors():
    with pytest.raises(UserError, match="at least 1"):
        choose_gears([(512, 704)], budget=0)
    with pytest.raises(UserError, match="no images"):
        choose_gears([], budget=5)
    with pytest.raises(UserError, match="fewer than the 2 size chains"):
        choose_gears([(512, 704), (704, 512)], budget=1)
    with pytest.raises(UserError, match="no room above the short side"):
        choose_gears([(512, 704)], budget=2, max_side=512)


# -- the COCO-like distribution (benchmarks/gears_coco_like.py) ---------------------------------

def test_coco_like_budget_5_pads_less_than_the_seed_gears():
    from hrdeploy_dekr.spec import DEKRSpec
    from hrdeploy_dekr.variants import VARIANTS

    sizes = coco_like_sizes()
    assert len(sizes) == 5000 and abs(sum(p for *_, p in COCO_LIKE) - 1) < 1e-9
    assert sum(max(s) == 640 for s in sizes) / len(sizes) > 0.9
    assert any(h > w for h, w in sizes) and any(w > h for h, w in sizes)
    var = VARIANTS["w32"]
    assert list(var.input.gears) == SEED_W32
    req = [DEKRSpec().network_size(var, h, w) for h, w in sizes]
    rep = gear_report(req, budget=5, seed_gears=var.input.gears)
    seed, one = rep["baselines"]["seed"], rep["baselines"]["one_gear"]
    assert len(rep["gears"]) <= 5 and seed["refused_images"] == 0
    assert rep["padded_pixels"] < seed["padded_pixels"] < one["padded_pixels"]
    assert rep["compute_pixels"] < seed["compute_pixels"]
    assert rep["padded_pixels"] == rep["compute_pixels"] - rep["required_pixels"]    # nothing cropped
    assert sum(r["images"] for r in rep["per_gear"]) == 5000


def test_benchmark_script_writes_json_and_markdown(tmp_path):
    import gears_coco_like

    assert gears_coco_like.main(["--out", str(tmp_path), "--stem", "g"]) == 0
    rep = json.loads((tmp_path / "g.json").read_text())
    assert rep["data"]["synthetic"] is True and rep["budget"] == 5
    assert rep["padded_pixels"] < rep["baselines"]["seed"]["padded_pixels"]
    assert "Synthetic data" in (tmp_path / "g.md").read_text()


# -- the command -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cocos(tmp_path_factory):
    from hrdeploy_dekr.synthetic import build_synthetic_coco as dekr_coco
    from hrdeploy_hrnet_pose.synthetic import build_synthetic_coco as pose_coco

    root = tmp_path_factory.mktemp("gears")
    dekr_coco(root / "dekr")            # two 320 x 320 images
    pose_coco(root / "pose")            # 640x480 (2), 480x640, 320x240
    return root


def test_command_on_the_dekr_synthetic_coco(cocos, tmp_path, run_cli):
    res = run_cli("gears", "dekr", "--data", f"coco:{cocos / 'dekr'}", "-o", tmp_path / "g.json",
                  "--plot", tmp_path / "g.png")
    assert res.code == 0, res
    rep = json.loads((tmp_path / "g.json").read_text())
    assert rep["model"] == "dekr" and rep["variant"] == "w32" and rep["images"] == 2
    assert rep["gears"] == [[512, 512]] and rep["padded_pixels"] == 0
    assert rep["per_gear"][0]["share"] == 1.0 and rep["compute_pixels"] == 2 * 512 * 512
    assert rep["baselines"]["seed"]["gears"] == [list(g) for g in SEED_W32]
    assert rep["data"]["source"].startswith("annotation")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "512x512" in res.out


def test_command_pads_less_than_the_seed_gears_on_the_pose_synthetic_coco(cocos, run_cli):
    res = run_cli("gears", "dekr", "--data", f"coco:{cocos / 'pose'}", "--budget", "5", "-o", "-")
    assert res.code == 0, res
    rep = json.loads(res.out)
    # 640x480 and 320x240 need 512x704, 480x640 needs 704x512: the seed pads them to 768
    assert rep["gears"] == [[512, 704], [704, 512]] and rep["padded_pixels"] == 0
    assert rep["baselines"]["seed"]["padded_pixels"] == 4 * 512 * 64
    assert rep["baselines"]["seed"]["padded_saving"] == 1.0


def test_command_reads_image_headers_without_an_annotation(cocos, tmp_path, run_cli):
    res = run_cli("gears", "dekr", "--data", f"coco:{cocos / 'pose' / 'val2017'}", "-o", tmp_path / "h.json")
    assert res.code == 0, res
    rep = json.loads((tmp_path / "h.json").read_text())
    assert rep["data"]["source"] == "image file headers" and rep["images"] == 4


@pytest.mark.parametrize("args, message", [
    (["hrnet_cls"], "hrnet_cls/w18 has a fixed input size 224x224: size gears do not apply"),
    (["hrnet_pose"], "has a fixed input size 256x192: size gears do not apply"),
    (["dekr", "--budget", "0"], "--budget must be at least 1 gear"),
])
def test_command_refusals_are_one_line(cocos, run_cli, args, message):
    res = run_cli("gears", *args, "--data", f"coco:{cocos / 'pose'}")
    assert res.code == 2
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.err


def test_command_refuses_empty_data(tmp_path, run_cli):
    (tmp_path / "empty" / "annotations").mkdir(parents=True)
    (tmp_path / "empty" / "annotations" / "person_keypoints_val2017.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": []}))
    res = run_cli("gears", "dekr", "--data", f"coco:{tmp_path / 'empty'}")
    assert res.code == 2 and "lists no images" in res.err and len(res.err.strip().splitlines()) == 1
    (tmp_path / "nothing").mkdir()
    res = run_cli("gears", "dekr", "--data", f"coco:{tmp_path / 'nothing'}")
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1, res.err


def test_command_does_not_write_over_its_data(cocos, run_cli):
    ann = cocos / "pose" / "annotations" / "person_keypoints_val2017.json"
    before = ann.read_bytes()
    res = run_cli("gears", "dekr", "--data", f"coco:{cocos / 'pose'}", "-o", ann)
    assert res.code == 2 and "does not write over its inputs" in res.err
    assert ann.read_bytes() == before
