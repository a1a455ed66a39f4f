"""Mutation testing of the pre- and post-processing modules (issue 20, item 4).

Runs cosmic-ray (a dev tool, not a dependency of hrdeploy: ``pip install cosmic-ray``) over each
module of ``MODULES`` with only the fast tests that cover it, on a copy of the tree so that the
working tree is never mutated, and writes ``<out>/mutation-YYYY-MM-DD.{json,md}``: per module the
mutants killed, survived and timed out, the score, and every survivor with file:line and its
mutation (with its reason, when ``tools/mutation_equivalents.json`` lists it as equivalent or
not worth a test).

    python tools/mutation.py                          # every module, reduced operator set
    python tools/mutation.py --modules dekr.postprocess --sample 60
    python tools/mutation.py --operators all          # cosmic-ray's full set (several hours)
    python tools/mutation.py --sample 80 --resume     # after adding tests: re-run the survivors only

Not collected by pytest and not part of CI: a full run takes tens of minutes.
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.json"


@dataclass(frozen=True)
class Module:
    """One mutated file and the narrowest test files or node ids (with an optional -k filter)
    that cover it."""
    path: str
    tests: tuple[str, ...]
    k: str | None = None
    extra: tuple[str, ...] = field(default=())


POSE_CORE_TESTS = ("tests/test_pose_core.py", "tests/test_mutants_pose.py")
# test files or node ids (file::test): the prediction checks of the metrics live with the resume tests
PREDICTION_CHECKS = "tests/test_resume.py::test_prediction_checks_of_the_core_metrics"
# The mapping module -> tests. Keep every command to a few seconds: no test that exports a network.
MODULES: dict[str, Module] = {
    "classification": Module("core/hrdeploy/tasks/classification.py",
                             ("tests/test_classification_task.py", "tests/test_mutants_classification.py",
                              PREDICTION_CHECKS)),
    "pose.affine": Module("core/hrdeploy/tasks/pose/affine.py", POSE_CORE_TESTS),
    "pose.coco": Module("core/hrdeploy/tasks/pose/coco.py",
                        POSE_CORE_TESTS + ("plugins/hrnet_pose/tests/test_synthetic_eval.py",)),
    "pose.draw": Module("core/hrdeploy/tasks/pose/draw.py", POSE_CORE_TESTS + ("tests/test_drawing.py",)),
    "pose.metric": Module("core/hrdeploy/tasks/pose/metric.py", POSE_CORE_TESTS + (PREDICTION_CHECKS,)),
    "pose.oks": Module("core/hrdeploy/tasks/pose/oks.py", POSE_CORE_TESTS),
    "hrnet_pose.pipeline": Module("plugins/hrnet_pose/hrdeploy_hrnet_pose/pipeline.py",
                                  ("plugins/hrnet_pose/tests/test_postprocess.py",
                                   "plugins/hrnet_pose/tests/test_synthetic_eval.py",
                                   "plugins/hrnet_pose/tests/test_quarter_border.py",
                                   "plugins/hrnet_pose/tests/test_mutants_postprocess.py")),
    "dekr.postprocess": Module("plugins/dekr/hrdeploy_dekr/postprocess.py",
                               ("plugins/dekr/tests/test_dekr_postprocess.py",
                                "plugins/dekr/tests/test_dekr_heat_border.py",
                                "plugins/dekr/tests/test_mutants_postprocess.py")),
    "dekr.pipeline": Module("plugins/dekr/hrdeploy_dekr/pipeline.py",
                            ("plugins/dekr/tests/test_dekr_pipeline.py",
                             "plugins/dekr/tests/test_mutants_pipeline.py"),
                            # a timing budget: on a loaded machine it would "kill" mutants by chance
                            k="not postprocess_cost"),
    "ascend.commands": Module("targets/ascend/hrdeploy_target_ascend/commands.py",
                              ("targets/ascend/tests/test_commands.py",
                               "targets/ascend/tests/test_mutants_commands.py")),
    "vastai.configs": Module("targets/vastai/hrdeploy_target_vastai/configs.py",
                             ("targets/vastai/tests/test_configs.py",
                              "targets/vastai/tests/test_mutants_configs.py")),
}

# The reduced operator set (default): each arithmetic or comparison operator is replaced by its
# natural counterpart only (the boundary or the inverse, as mutmut does), not by all twelve binary
# operators or all ten comparisons: `a * b` -> `a << b` or `a ^ b` only multiplies the mutants a test
# has to kill without probing anything `a / b` does not.
REDUCED_BINARY = {"Add": {"Sub"}, "Sub": {"Add"}, "Mul": {"Div"}, "Div": {"Mul", "FloorDiv"},
                  "FloorDiv": {"Div", "Mul"}, "Mod": {"FloorDiv"}, "Pow": {"Mul"}, "BitOr": {"BitAnd"},
                  "BitAnd": {"BitOr"}, "BitXor": {"BitOr"}, "LShift": {"RShift"}, "RShift": {"LShift"}}
REDUCED_COMPARISON = {"Eq": {"NotEq"}, "NotEq": {"Eq"}, "Lt": {"LtE", "GtE"}, "LtE": {"Lt", "Gt"},
                      "Gt": {"GtE", "LtE"}, "GtE": {"Gt", "Lt"}, "Is": {"IsNot"}, "IsNot": {"Is"},
                      "In": {"NotIn"}, "NotIn": {"In"}}
REDUCED_UNARY = {("USub", "Delete"), ("Not", "Delete"), ("Delete", "USub"), ("Delete", "Not")}


def keep_operator(name: str) -> bool:
    """Whether an operator of cosmic-ray's core set belongs to the reduced set."""
    op = name.split("/", 1)[-1]
    if m := re.fullmatch(r"ReplaceBinaryOperator_(\w+)_(\w+)", op):
        return m[2] in REDUCED_BINARY.get(m[1], set())
    if m := re.fullmatch(r"ReplaceComparisonOperator_(\w+)_(\w+)", op):
        return m[2] in REDUCED_COMPARISON.get(m[1], set())
    if m := re.fullmatch(r"ReplaceUnaryOperator_(\w+)_(\w+)", op):
        return (m[1], m[2]) in REDUCED_UNARY
    # VariableReplacer/VariableInserter insert random names; RemoveDecorator only removes
    # @dataclass/@property-style decorators whose loss fails at import or at first use.
    return op not in {"VariableReplacer", "VariableInserter", "RemoveDecorator"}


def annotation_lines(source: str) -> set[tuple[int, int, int, int]]:
    """The spans of every type annotation: with `from __future__ import annotations` they are never
    evaluated, so a mutant inside one (`int | None` -> `int & None`) is equivalent by construction."""
    spans = set()
    for node in ast.walk(ast.parse(source)):
        ann = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            ann.append(node.returns)
            a = node.args
            ann += [x.annotation for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x]
        elif isinstance(node, ast.AnnAssign):
            ann.append(node.annotation)
        spans |= {(n.lineno, n.col_offset, n.end_lineno, n.end_col_offset) for n in ann if n is not None}
    return spans


def inside(pos: tuple[int, int], span: tuple[int, int, int, int]) -> bool:
    return (span[0], span[1]) <= tuple(pos) <= (span[2], span[3])


def copy_tree(dest: Path) -> Path:
    """A fresh copy of the repository (no .git, no build output, no caches) to mutate."""
    if dest.exists():
        shutil.rmtree(dest)

    def ignore(d: str, names: list[str]) -> set[str]:
        skip = {"__pycache__", ".pytest_cache", ".cache", "node_modules"}
        if Path(d) == ROOT:
            skip |= {".git", "build"}
        return {n for n in names if n in skip or n.endswith(".egg-info")}

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)
    return dest


def copy_env(tree: Path) -> dict[str, str]:
    """An environment in which the copy's packages shadow the editable installs of the working tree:
    PYTHONPATH comes before the editable .pth paths and before the editable finders."""
    paths = [tree / "core"] + sorted(p.parent.parent for p in tree.glob("*/*/hrdeploy_*/__init__.py"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, paths)), PYTHONDONTWRITEBYTECODE="1")
    return env


def import_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    parts = parts[1:] if parts[0] == "core" else parts[2:]
    return ".".join(p for p in parts if p != "__init__")


def check_shadowing(tree: Path, env: dict[str, str], modules: list[Module]) -> None:
    """Refuse to run if a module would be imported from the working tree instead of the copy."""
    code = ("import importlib, sys\n"
            "for n in sys.argv[1:]: print(importlib.import_module(n).__file__)")
    out = subprocess.run([sys.executable, "-c", code, *map(import_name, (m.path for m in modules))],
                         env=env, cwd=tree, capture_output=True, text=True, check=True).stdout.split()
    for m, f in zip(modules, out):
        if Path(f).resolve() != (tree / m.path).resolve():
            sys.exit(f"error: {import_name(m.path)} imports from {f}, not from the copy {tree}")


def tests_command(m: Module, tree: Path) -> list[str]:
    """The module's test command; a mapped test file that does not exist is left out, with a note."""
    tests = [t for t in m.tests if (tree / t.split("::")[0]).exists()]
    for t in sorted(set(m.tests) - set(tests)):
        print(f"note: {t} (mapped to {m.path}) does not exist: not run", file=sys.stderr)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    return cmd + (["-k", m.k] if m.k else [])


def baseline(tree: Path, env: dict[str, str], m: Module) -> float:
    """Seconds the module's tests take on the unmutated copy; exits if they do not pass."""
    t0 = time.monotonic()
    res = subprocess.run(tests_command(m, tree), env=env, cwd=tree, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: the tests of {m.path} fail without any mutation:\n{res.stdout[-3000:]}")
    return time.monotonic() - t0


def select(db_path: Path, source: str, operators: str, sample: int, seed: int) -> dict[str, int]:
    """Mark the work items not run as skipped; return the counts by reason."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = annotation_lines(source)
    counts = {"generated": 0, "annotation": 0, "operator": 0, "sampled_out": 0}
    skip: list[str] = []
    keep: list[str] = []
    seen_numbers: set[tuple[int, int]] = set()
    stable: dict[str, tuple[str, int]] = {}
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item in db.work_items:
            counts["generated"] += 1
            mut = item.mutations[0]
            if any(inside(mut.start_pos, s) for s in spans):
                counts["annotation"] += 1
                skip.append(item.job_id)
                continue
            number = mut.operator_name.endswith("NumberReplacer")
            # NumberReplacer makes n+1 and n-1 of every literal: the reduced set keeps one of them.
            if operators == "reduced" and (not keep_operator(mut.operator_name)
                                           or (number and tuple(mut.start_pos) in seen_numbers)):
                counts["operator"] += 1
                skip.append(item.job_id)
                continue
            if number:
                seen_numbers.add(tuple(mut.start_pos))
            keep.append(item.job_id)
            stable[item.job_id] = (mut.operator_name, mut.occurrence)
        if sample and len(keep) > sample:
            rng = random.Random(seed)
            # job ids are random per init: sample by (operator, occurrence), stable while the file is
            chosen = set(rng.sample(sorted(keep, key=lambda j: stable[j]), sample))
            out = [j for j in keep if j not in chosen]
            counts["sampled_out"] = len(out)
            skip += out
        if skip:
            db.set_multiple_results(skip, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    counts["run"] = counts["generated"] - len(skip)
    return counts


def changed_lines(diff: str) -> tuple[str, str]:
    old = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return " / ".join(old), " / ".join(new)


def equivalent_key(path: str, old: str, new: str) -> str:
    return f"{path} :: {old} -> {new}"


def reopen_survivors(db: Path) -> int:
    """Make the survivors (and timeouts) of a previous session pending again; killed stay killed:
    a test added since cannot revive a mutant the unchanged module's tests already killed."""
    import sqlite3

    with sqlite3.connect(db) as con:
        n = con.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED' OR "
                        "(test_outcome = 'KILLED' AND output = 'timeout')").rowcount
    return n


def run_module(name: str, m: Module, tree: Path, work: Path, env: dict[str, str], args: argparse.Namespace,
               equivalents: dict[str, str], previous_source: str | None) -> dict:
    from cosmic_ray.work_db import WorkDB, use_db

    cfg = work / f"{name}.toml"
    db = work / f"{name}.sqlite"
    counts_file = work / f"{name}.counts.json"
    if args.report_only:
        if not (db.exists() and counts_file.exists()):
            sys.exit(f"error: no finished session of {name} in {work}")
        return collect(name, m, db, json.loads(counts_file.read_text()), equivalents)
    t0 = time.monotonic()
    base = baseline(tree, env, m)
    timeout = max(args.min_timeout, args.timeout_factor * base)
    cmd = " ".join(tests_command(m, tree))
    cfg.write_text(f'[cosmic-ray]\nmodule-path = "{tree / m.path}"\ntimeout = {timeout:.1f}\n'
                   f'excluded-modules = []\ntest-command = {json.dumps(cmd)}\n\n'
                   '[cosmic-ray.distributor]\nname = "local"\n')
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    source = (tree / m.path).read_text()
    tests = [t for t in m.tests if (tree / t.split("::")[0]).exists()]
    before = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    # resuming is sound only if nothing that killed a mutant went away: same source, same -k,
    # every test file of the previous session still run (new ones may be added)
    resumed = bool(args.resume and db.exists() and previous_source == source and before
                   and before.get("k") == m.k and set(before.get("tests", ())) <= set(tests))
    if args.dry_run:   # count in a scratch session: the one in --workdir may be resumed later
        scratch = work / f"{name}.dry.sqlite"
        scratch.unlink(missing_ok=True)
        subprocess.run(cr + ["init", str(cfg), str(scratch)], env=env, cwd=tree, check=True, capture_output=True)
        counts = select(scratch, source, args.operators, args.sample, args.seed)
        scratch.unlink()
        print(f"[{name}] baseline {base:.1f}s, {counts['run']} mutants of {counts['generated']}", flush=True)
        return {"module": name, "file": m.path, **counts}
    if resumed:
        counts = {k: v for k, v in before.items() if k not in ("tests", "k")}
        counts["rerun"] = reopen_survivors(db)
    else:
        db.unlink(missing_ok=True)
        subprocess.run(cr + ["init", str(cfg), str(db)], env=env, cwd=tree, check=True, capture_output=True)
        counts = select(db, source, args.operators, args.sample, args.seed)
    counts_file.write_text(json.dumps({**counts, "tests": tests, "k": m.k}))
    print(f"[{name}] baseline {base:.1f}s, timeout {timeout:.0f}s, {counts['run']} mutants of "
          f"{counts['generated']}" + (f" (resumed: {counts['rerun']} survivors re-run)" if resumed else ""),
          flush=True)
    with open(work / f"{name}.log", "w") as log:
        subprocess.run(cr + ["exec", str(cfg), str(db)], env=env, cwd=tree, check=True, stdout=log, stderr=log)
    counts.update(tests=tests, k=m.k, resumed=resumed, baseline_s=round(base, 2), timeout_s=round(timeout, 1),
                  wall_s=round(time.monotonic() - t0, 1))
    counts_file.write_text(json.dumps(counts))
    return collect(name, m, db, counts, equivalents)


def collect(name: str, m: Module, db: Path, counts: dict, equivalents: dict[str, dict[str, str]]) -> dict:
    """The outcome of a finished session: counts, score and every survivor."""
    from cosmic_ray.work_db import WorkDB, use_db

    killed = timeout_n = incompetent = 0
    survivors = []
    with use_db(str(db), WorkDB.Mode.open) as wdb:
        for item, result in wdb.completed_work_items:
            if result.worker_outcome == "skipped":
                continue
            if result.test_outcome == "survived":
                mut = item.mutations[0]
                old, new = changed_lines(result.diff or "")
                why = equivalents.get(equivalent_key(m.path, old, new)) or {}
                survivors.append({"file": m.path, "line": mut.start_pos[0], "operator": mut.operator_name,
                                  "occurrence": mut.occurrence, "old": old, "new": new,
                                  "kind": why.get("kind"), "reason": why.get("reason")})
            elif result.test_outcome == "killed" and result.output == "timeout":
                timeout_n += 1
            elif result.test_outcome == "incompetent" or result.worker_outcome != "normal":
                incompetent += 1
            else:
                killed += 1
    survivors.sort(key=lambda s: (s["line"], s["operator"]))
    n_equiv = sum(1 for s in survivors if s["kind"] == "equivalent")
    n_unworthy = sum(1 for s in survivors if s["kind"] == "not worth killing")
    detected = killed + timeout_n
    total = detected + len(survivors)
    res = {"module": name, "file": m.path, **counts, "killed": killed, "timeout": timeout_n,
           "incompetent": incompetent, "survived": len(survivors), "equivalent": n_equiv,
           "not_worth_killing": n_unworthy, "unexplained": len(survivors) - n_equiv - n_unworthy,
           "score": round(detected / total, 4) if total else None,
           "score_without_equivalents": round(detected / (total - n_equiv), 4) if total - n_equiv else None,
           "survivors": survivors}
    print(f"[{name}] killed {killed}, timeout {timeout_n}, survived {len(survivors)} "
          f"({n_equiv} equivalent, {n_unworthy} not worth killing), score {res['score']}, "
          f"{res.get('wall_s', 0):.0f}s", flush=True)
    return res


def markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"# Mutation testing, {report['date']}", "",
             f"cosmic-ray {report['tool_version']}, operators: {s['operators']}"
             + (f", at most {s['sample']} mutants per module (seed {s['seed']})" if s["sample"] else "")
             + f"; per-mutant timeout max({s['min_timeout']} s, {s['timeout_factor']} x baseline). "
             f"Wall time {report['wall_s'] / 60:.1f} min on {report['host']}.", "",
             "Mutants inside type annotations are not run (never evaluated under "
             "`from __future__ import annotations`: equivalent by construction).", "",
             "Score = (killed + timeout) / run. *Equivalent*: no input can tell the mutant from the code; "
             "*not worth killing*: observable, but only in cosmetics (drawing, message wording) or in "
             "values no reference pins; *unexplained*: a test is missing.", "",
             "| module | generated | run | killed | timeout | survived | equivalent | not worth | unexplained "
             "| score | score w/o equiv. |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [*report["modules"], {**report["total"], "module": "**total**"}]
    for r in rows:
        lines.append(f"| {r['module']} | {r['generated']} | {r['run']} | {r['killed']} | {r['timeout']} | "
                     f"{r['survived']} | {r['equivalent']} | {r['not_worth_killing']} | {r['unexplained']} | "
                     f"{fmt(r['score'])} | {fmt(r['score_without_equivalents'])} |")
    resumed = [r["module"] for r in report["modules"] if r.get("resumed")]
    if resumed:
        lines += ["", "Resumed (`--resume`: killed mutants of the previous session kept, survivors re-run): "
                  + ", ".join(resumed) + "."]
    lines.append("")
    for r in report["modules"]:
        if not r["survivors"]:
            continue
        lines += [f"## Survivors in {r['file']}", "", "| line | operator | mutation | kind | why |",
                  "|---|---|---|---|---|"]
        for v in r["survivors"]:
            mut = f"`{v['old']}` -> `{v['new']}`".replace("|", "\\|")
            lines.append(f"| {v['line']} | {v['operator'].split('/')[-1]} | {mut} | {v['kind'] or 'unexplained'} | "
                         f"{(v['reason'] or '').replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--modules", nargs="*", choices=sorted(MODULES), help="default: every module")
    p.add_argument("--operators", choices=("reduced", "all"), default="reduced")
    p.add_argument("--sample", type=int, default=0, help="at most N mutants per module (0: all)")
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--min-timeout", type=float, default=15.0)
    p.add_argument("--timeout-factor", type=float, default=4.0)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/hrdeploy-mutation"))
    p.add_argument("--resume", action="store_true",
                   help="reuse the sessions in --workdir of every module whose source is unchanged: "
                        "its killed mutants stay killed, only the survivors are re-run")
    p.add_argument("--report-only", action="store_true",
                   help="only write the report of the finished sessions in --workdir (e.g. after editing "
                        "tools/mutation_equivalents.json)")
    p.add_argument("--dry-run", action="store_true", help="only count the mutants that would run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    try:
        import cosmic_ray  # noqa: F401
        from importlib.metadata import version
        tool_version = version("cosmic-ray")
    except ImportError:
        print("error: cosmic-ray is not installed; run `pip install cosmic-ray` (a dev tool only)", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    names = args.modules or list(MODULES)
    args.workdir.mkdir(parents=True, exist_ok=True)
    old_tree = args.workdir / "tree"
    previous = {n: (old_tree / MODULES[n].path).read_text() for n in names
                if args.resume and (old_tree / MODULES[n].path).is_file()}
    tree = old_tree if args.report_only else copy_tree(old_tree)
    env = copy_env(tree)
    if not args.report_only:
        check_shadowing(tree, env, [MODULES[n] for n in names])
    equivalents = json.loads(EQUIVALENTS.read_text()) if EQUIVALENTS.exists() else {}
    results = [run_module(n, MODULES[n], tree, args.workdir, env, args, equivalents, previous.get(n))
               for n in names]
    if args.dry_run:
        print(json.dumps(results, indent=1))
        return 0

    keys = ("generated", "run", "killed", "timeout", "incompetent", "survived", "equivalent", "not_worth_killing",
            "unexplained")
    total = {k: sum(r[k] for r in results) for k in keys}
    detected = total["killed"] + total["timeout"]
    n = detected + total["survived"]
    total["score"] = round(detected / n, 4) if n else None
    total["score_without_equivalents"] = (round(detected / (n - total["equivalent"]), 4)
                                          if n - total["equivalent"] else None)
    today = dt.date.today().isoformat()
    report = {"date": today, "host": os.uname().nodename, "tool": "cosmic-ray", "tool_version": tool_version,
              "settings": {k: getattr(args, k) for k in ("operators", "sample", "seed", "min_timeout",
                                                          "timeout_factor")},
              # --report-only: the time the sessions took when they ran
              "wall_s": round(sum(r.get("wall_s", 0) for r in results) if args.report_only
                              else time.monotonic() - t0, 1), "total": total, "modules": results}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"mutation-{today}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"score {fmt(total['score'])} ({fmt(total['score_without_equivalents'])} without equivalents); "
          f"wrote {stem}.json and .md in {report['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
