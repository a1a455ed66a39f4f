"""The ``hrdeploy`` command line: one vocabulary for every installed model and target."""
from __future__ import annotations

import json
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import (
    EXIT_BREACH,
    EXIT_CODES_HELP,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USER,
    ParityError,
    UserError,
    describe_os_error,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="HRNet-family models from a PyTorch checkpoint to a measured deployment.\n\n"
                       "export -> convert -> predict / eval / bench / verify, for any installed model on any installed target."
                       "\n\n" + EXIT_CODES_HELP)
toolchain_app = typer.Typer(no_args_is_help=True, help="Provision vendor toolchains (nothing is installed behind your back).")
app.add_typer(toolchain_app, name="toolchain")
plugin_app = typer.Typer(no_args_is_help=True, help="Start a new model or target plugin.")
app.add_typer(plugin_app, name="plugin")
_BUILTIN_GROUPS = list(app.registered_groups)


def _takes_declared(*kinds: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a command as taking the flags the installed plugins declare (``"model"`` options,
    ``"target"`` options); :func:`_install_plugin_parts` adds them before each parse."""
    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        func._hrdeploy_kinds = kinds  # type: ignore[attr-defined]
        return func
    return mark


def _own_flags(func: Callable[..., Any]) -> set[str]:
    """The flags a command declares itself (a plugin's option never hides one of them)."""
    import inspect

    flags: set[str] = set()
    for p in inspect.signature(func).parameters.values():
        for decl in getattr(p.default, "param_decls", None) or ():
            flags.update(d for part in decl.split("/") for d in [part.strip()] if d.startswith("-"))
    return flags


def _declaring_commands() -> Iterator[tuple[Any, Callable[..., Any], tuple[str, ...]]]:
    """(command info, undecorated function, kinds) of each command taking plugin-declared flags."""
    for info in app.registered_commands:
        base = getattr(info.callback, "_hrdeploy_base", info.callback)
        kinds = getattr(base, "_hrdeploy_kinds", None)
        if kinds is not None:
            yield info, base, kinds


def _install_plugin_parts(registry: Any) -> None:
    """Before each parse, from the installed plugins: the generated flags of every command
    that takes them (:mod:`hrdeploy.plugin_flags`) and the subcommands plugins add through the
    ``hrdeploy_commands`` hook. Rebuilt each time so the process-wide ``app`` always reflects
    the registry in use (tests swap registries)."""
    from .plugin_flags import declared_flags, with_flags

    for info, base, kinds in _declaring_commands():
        flags, _ = declared_flags(registry, _own_flags(base))
        wrapped = with_flags(base, flags, kinds)
        wrapped._hrdeploy_base = base  # type: ignore[attr-defined]
        info.callback = wrapped
    app.registered_groups = list(_BUILTIN_GROUPS)
    app.registered_commands = [c for c in app.registered_commands if not getattr(c, "_hrdeploy_plugin", False)]
    before = len(app.registered_commands)
    registry.call("hrdeploy_commands", cli=app)
    for info in app.registered_commands[before:]:
        info._hrdeploy_plugin = True  # type: ignore[attr-defined]


def _flag_notes(registry: Any) -> list[str]:
    """How plugin-declared option names were told apart (shared flags, ``--target-NAME``,
    names left to ``--set``/``--opt``), per command; for ``hrdeploy doctor``."""
    from .plugin_flags import declared_flags

    commands: dict[str, list[str]] = {}
    for info, base, kinds in _declaring_commands():
        for kind, line in declared_flags(registry, _own_flags(base))[1]:
            if kind in kinds:
                commands.setdefault(line, []).append(info.name or base.__name__)
    return [f"{line} ({', '.join(names)})" for line, names in sorted(commands.items())]


def _console(stderr: bool) -> Console:
    # rich wraps at 80 columns when not writing to a terminal; logs and CI deserve wider tables
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, width=None if probe.is_terminal else 160)


out = _console(False)
err = _console(True)
_state = {"debug": False}


def _registry() -> Any:
    from .plugins import registry

    return registry()


def _log(msg: str) -> None:
    err.print(f"[dim]{msg}[/dim]", highlight=False)


def _kv(pairs: Optional[List[str]], what: str) -> dict[str, str]:
    out_: dict[str, str] = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise UserError(f"{what} expects KEY=VALUE, got {p!r}")
        out_[k.strip().replace("-", "_")] = v
    return out_


def _declared_options(declared: Optional[dict[str, dict[str, Any]]], kind: str, pairs: Optional[List[str]],
                      what: str) -> dict[str, Any]:
    """A plugin's options from its generated flags, then ``--opt``/``--set KEY=VALUE``."""
    return {**((declared or {}).get(kind) or {}), **_kv(pairs, what)}


def _progress(description: str) -> Callable[[int, int], Callable[[int], None]]:
    """A rich progress bar on stderr, created lazily by the command that needs it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    holder: dict[str, Any] = {}

    def start(total: int, done: int) -> Callable[[int], None]:
        prog = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, transient=False, disable=not err.is_terminal)
        prog.start()
        task = prog.add_task(description, total=total, completed=done)
        holder["p"] = prog

        def tick(n: int) -> None:
            prog.advance(task, n)
            if prog.tasks[task].completed >= total:
                prog.stop()
        return tick

    return start


def _print_version(value: bool) -> None:
    """``--version``: hrdeploy's version and each installed plugin distribution's, read from
    the entry-point metadata (no plugin is imported, so a broken one cannot hide the others)."""
    if not value:
        return
    from .plugins import installed_distributions

    out.print(f"hrdeploy {__version__}", highlight=False)
    for dist, version, provides in installed_distributions():
        out.print(f"{dist} {version or '?'} ({', '.join(provides)})", highlight=False)
    raise typer.Exit(0)


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
          version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print hrdeploy's version and every installed plugin's, and exit.")) -> None:
    _state["debug"] = debug


# -- list / doctor ---------------------------------------------------------------------------------

@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Installed models and targets, with each plugin's status and each toolchain's availability."""
    from .inventory import inventory

    inv = inventory(_registry())
    if as_json:
        print(json.dumps(inv, indent=2))
        return
    t = Table(title="models", title_justify="left")
    for c in ("name", "task", "variants", "distribution", "version", "status"):
        t.add_column(c)
    for m in inv["models"]:
        t.add_row(m["name"], m["task"] or "", ", ".join(m["variants"]), m["distribution"] or "", m["version"] or "",
                  m["status"] if m["status"] == "ok" else f"[red]{m['status']}[/red]: {m['error']}")
    out.print(t)
    t = Table(title="targets", title_justify="left")
    for c in ("name", "distribution", "version", "status", "available", "detail"):
        t.add_column(c)
    for g in inv["targets"]:
        t.add_row(g["name"], g["distribution"] or "", g["version"] or "",
                  g["status"] if g["status"] == "ok" else f"[red]{g['status']}[/red]: {g['error']}",
                  "yes" if g["available"] else "no", g["detail"] or "")
    out.print(t)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Versions of everything hrdeploy depends on, each target's probe, and plugins that failed."""
    from .inventory import doctor_report

    rep = doctor_report(_registry())
    rep["option_flags"] = _flag_notes(_registry())
    if as_json:
        print(json.dumps(rep, indent=2))
        return
    t = Table(title="environment", title_justify="left", show_header=False)
    for k, v in rep["environment"].items():
        t.add_row(k, str(v))
    out.print(t)
    t = Table(title="targets", title_justify="left")
    for c in ("target", "available", "version", "detail"):
        t.add_column(c)
    for name, p in rep["targets"].items():
        t.add_row(name, "yes" if p.get("available") else "no", str(p.get("version") or ""), p.get("detail", ""))
    out.print(t)
    if rep["option_flags"]:
        out.print("[bold]option flags[/bold] (plugin-declared names told apart)")
        for n in rep["option_flags"]:
            out.print(f"  - {n}", highlight=False, markup=False)
    if rep["problems"]:
        out.print("[bold]problems[/bold]")
        for p in rep["problems"]:
            out.print(f"  - {p}", highlight=False)
    else:
        out.print("no problems found")


# -- export / convert ----------------------------------------------------------------------------

def _is_stdout(path: Optional[Path]) -> bool:
    return path is not None and str(path) == "-"


def _write_json(path: Optional[Path], obj: Any) -> None:
    """``--json PATH``: an atomic file write, or the document alone on standard output for ``-``."""
    from .io import atomic_write_json, dumps

    if path is None:
        return
    if _is_stdout(path):
        print(dumps(obj))
        return
    atomic_write_json(path, obj)
    out.print(f"wrote {path}", highlight=False)


def _parity_table(title: str | None, report: Any) -> Table:
    """One table layout for every parity figure: a ParityReport or its JSON form."""
    from .parity import TABLE_COLUMNS, table_rows

    t = Table(title=title, title_justify="left")
    for c in TABLE_COLUMNS:
        t.add_column(c)
    for row in table_rows(report if isinstance(report, dict) else report.to_dict()):
        t.add_row(*row)
    return t


@app.command()
@_takes_declared("model")
def export(model: str = typer.Argument(..., help="Model name (see 'hrdeploy list')."),
           output: Path = typer.Option(..., "-o", "--output", help="The .onnx file to write."),
           variant: Optional[str] = typer.Option(None, "--variant", help="Variant (default: the model's first)."),
           weights: Optional[Path] = typer.Option(None, "--weights", help="Checkpoint (official, timm, mm* layouts...)."),
           random_weights: bool = typer.Option(False, "--random-weights", help="Export seeded random weights (not a trained model)."),
           seed: int = typer.Option(0, "--seed", help="Seed for --random-weights and the parity input."),
           batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Static batch size (default: dynamic batch)."),
           dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Dynamic batch axis (the default)."),
           opset: int = typer.Option(17, "--opset", min=7, help="ONNX opset."),
           ref_images: Optional[Path] = typer.Option(None, "--ref-images", help="Images for the reference set stored with the file."),
           strict: bool = typer.Option(True, "--strict/--no-strict", help="Fail (exit 1) when ONNX Runtime breaches the tolerance."),
           force: bool = typer.Option(False, "--force", help="Replace an existing -o file (and its .ref.npz)."),
           opts: Optional[List[str]] = typer.Option(None, "--opt", help="Model option KEY=VALUE (each declared option also has its own flag)."),
           declared: Optional[dict] = None) -> None:
    """Export a model to ONNX and check ONNX Runtime against PyTorch on the same input."""
    from .io import list_images
    from .onnx_export import export as do_export

    if batch is not None and dynamic_batch:
        raise UserError("--batch and --dynamic-batch exclude each other")
    spec = _registry().model(model)
    var = spec.variant(variant)
    from .outputs import check_export_output

    model_opts = _declared_options(declared, "model", opts, "--opt")
    check_export_output(output, weights=weights, ref_images=ref_images, options=model_opts, force=force)
    try:
        rep = do_export(spec, var, output, weights=weights, random_weights=random_weights, seed=seed, batch=batch,
                        opset=opset, strict=strict, ref_images=list_images(ref_images) if ref_images else None,
                        options=model_opts, log=_log)
    except ParityError as e:
        out.print(_parity_table("PyTorch vs ONNX Runtime", e.report))
        raise
    out.print(_parity_table(f"PyTorch vs ONNX Runtime ({rep.parity.inputs} inputs)", rep.parity))
    verdict = "[green]within tolerance[/green]" if rep.parity.passed else "[red]BREACH (kept: --no-strict)[/red]"
    out.print(f"wrote {output} ({spec.name}/{var.name}, opset {opset}); parity {verdict}")
    if "RANDOM" in rep.metadata["weights"]:
        out.print("[yellow]note: random weights: predictions are meaningless, numbers are for parity and speed only[/yellow]")
    if not rep.parity.passed:
        raise typer.Exit(1)


@app.command()
@_takes_declared("target", "model")
def convert(onnx_file: Optional[Path] = typer.Argument(None, help="An .onnx file written by 'hrdeploy export'."),
            target: str = typer.Option("onnxruntime", "--target", "-t", help="Target name (see 'hrdeploy list')."),
            output: Optional[Path] = typer.Option(None, "-o", "--output", help="Artifact folder to write."),
            from_plan: Optional[Path] = typer.Option(None, "--from-plan", help="Compile a folder written by --dry-run (on the machine with the toolchain)."),
            device: Optional[str] = typer.Option(None, "--device", help="Device for the parity run after --from-plan."),
            batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes to compile, e.g. 1,4,8."),
            precision: str = typer.Option("fp32", "--precision", help="fp32, fp16, bf16 or int8 (what the target builds: hrdeploy list --json)."),
            calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration images (int8)."),
            calib_count: int = typer.Option(100, "--calib-count", min=1, help="How many calibration images."),
            gears: Optional[Path] = typer.Option(None, "--gears", metavar="FILE", help="Input size gears to compile instead of the model's own: a JSON as 'hrdeploy gears -o' writes ({\"gears\": [[H, W], ...]}) or a list of [H, W]; static-shape targets build each, onnxruntime ignores it. 'auto' chooses them from --data (as 'hrdeploy gears' does)."),
            gears_data: Optional[str] = typer.Option(None, "--data", help="With --gears auto: KIND:PATH of the images whose sizes choose the gears (e.g. coco:/data/coco)."),
            gears_budget: int = typer.Option(5, "--gears-budget", min=1, help="With --gears auto: at most this many gears."),
            accuracy_budget: Optional[str] = typer.Option(None, "--accuracy-budget", metavar="SPEC", help="int8 mixed precision: keep the layers adding the most error in float until this holds on held-out inputs: cosine=0.9999, top1=0.995 (agreement with fp32), keypoints-px=1.0, or metric-drop=0.5 (task metric on --data). Exit 1 when even all-float misses it (the closest build kept)."),
            limit: Optional[int] = typer.Option(None, "--limit", min=1, help="With --accuracy-budget metric-drop: evaluate the first N images of --data."),
            budget_steps: int = typer.Option(14, "--budget-steps", min=1, help="With --accuracy-budget: at most this many builds (full int8, one per depth segment, then joins and trims)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Write the plan and print the commands; run nothing."),
            force: bool = typer.Option(False, "--force", help="Replace an existing artifact folder (only one hrdeploy wrote, or an empty one)."),
            step_timeout: Optional[float] = typer.Option(None, "--step-timeout", metavar="SECONDS", help="Stop a vendor tool step (atc, model_deploy, vamc...) that runs longer than this (default 4 h; 0: no limit)."),
            strict: bool = typer.Option(True, "--strict/--no-strict", help="Exit 1 when the converted model breaches its tolerance."),
            toolchain_verdict: str = typer.Option("record", "--toolchain-verdict", help="record: the vendor tools' own similarity verdicts are recorded and printed, hrdeploy's tolerance decides; decide: a failed vendor verdict is a breach too (exit 1, artifact kept)."),
            sets: Optional[List[str]] = typer.Option(None, "--set", help="Target option KEY=VALUE (each declared option also has its own flag)."),
            opts: Optional[List[str]] = typer.Option(None, "--opt", help="Model option KEY=VALUE for calibration preprocessing."),
            declared: Optional[dict] = None) -> None:
    """Convert an exported ONNX model for a target; the artifact's manifest records every command and the parity."""
    from .conversion import convert as do_convert
    from .conversion import convert_from_plan
    from .validate import batch_sizes

    if batch is not None:
        batch_sizes(batch)  # refused before any file is read
    reg = _registry()
    if from_plan is not None:
        if onnx_file is not None or output is not None or gears is not None or gears_data is not None:
            raise UserError("--from-plan takes the plan folder only (no ONNX file, no -o, no --gears)")
        art = convert_from_plan(reg, from_plan, device=device, log=_log, toolchain_verdict=toolchain_verdict,
                                step_timeout=step_timeout)
        _print_convert(art, dry_run=False, target=art.target, output=from_plan, strict=strict)
        return
    if onnx_file is None or output is None:
        raise UserError("convert needs an ONNX file and -o ARTIFACT_DIR (or --from-plan PLAN_DIR)")
    if accuracy_budget is not None:
        _budgeted_convert(reg, onnx_file, target, output, accuracy_budget, precision=precision.lower(),
                          data=gears_data, limit=limit, steps=budget_steps, dry_run=dry_run,
                          convert_kwargs=dict(batch=batch, calib_dir=calib, calib_count=calib_count, force=force,
                                              target_options=_declared_options(declared, "target", sets, "--set"),
                                              model_options=_declared_options(declared, "model", opts, "--opt"),
                                              toolchain_verdict=toolchain_verdict, step_timeout=step_timeout,
                                              gears=gears, gears_data=gears_data if str(gears) == "auto" else None,
                                              gears_budget=gears_budget))
        return
    art = do_convert(reg, onnx_file, target, output, precision=precision.lower(), batch=batch, calib_dir=calib,
                     calib_count=calib_count, dry_run=dry_run, force=force,
                     target_options=_declared_options(declared, "target", sets, "--set"),
                     model_options=_declared_options(declared, "model", opts, "--opt"), log=_log,
                     toolchain_verdict=toolchain_verdict, step_timeout=step_timeout, gears=gears,
                     gears_data=gears_data, gears_budget=gears_budget)
    _print_convert(art, dry_run, target, output, strict)


def _budgeted_convert(reg: Any, onnx_file: Path, target: str, output: Path, spec: str, *, precision: str,
                      data: Optional[str], limit: Optional[int], steps: int, dry_run: bool,
                      convert_kwargs: dict[str, Any]) -> None:
    from .budget import budgeted_convert, parse_budget

    budget = parse_budget(spec)
    if precision != "int8":
        raise UserError("--accuracy-budget chooses which layers of an int8 build stay in float", "add --precision int8")
    if dry_run:
        raise UserError("--accuracy-budget measures every step, so it cannot be a dry run",
                        "run it where the target runs (the chosen layers are then in the manifest)")
    if convert_kwargs.get("calib_dir") is None:
        raise UserError("int8 needs calibration images", "pass --calib DIR")
    art, rec = budgeted_convert(reg, onnx_file, target, output, budget, convert_kwargs=convert_kwargs, data=data,
                                limit=limit, max_steps=steps, log=_log)
    t = Table(title=f"{art.describe()}: accuracy budget {rec['budget']} on {rec['held_out']}", title_justify="left")
    for c in ("build", "layers in float", "why", "min cosine", "task", "img/s (batch %d)" % rec["bench_batch"], "budget"):
        t.add_column(c)
    for i, st in enumerate(rec["steps"]):
        task = st.get("task") or {}
        metric = st.get("metric")
        figure = (f"drop {metric['drop']:.3g}" if metric else
                  f"{task['name']} {task['value']:.4g}" if task else "-")
        t.add_row(str(i) + (" (kept)" if i == rec["chosen_step"] else ""), str(st["layers_in_float"]),
                  st.get("why", ""), f"{st['min_cosine']:.6f}", figure,
                  f"{st['images_per_second']:.1f}" if st.get("images_per_second") else "-",
                  "met" if st["met"] else "missed")
    out.print(t)
    if rec.get("fp32_images_per_second"):
        sp = rec.get("speedup_over_fp32") or {}
        out.print(f"fp32 (source on onnxruntime): {rec['fp32_images_per_second']:.1f} img/s; full int8 "
                  f"{sp.get('int8', 0):.2f}x, the kept build {sp.get('chosen', 0):.2f}x fp32"
                  + (f" ({sp['kept_of_int8_speedup'] * 100:.0f}% of int8's speed-up kept)"
                     if sp.get("kept_of_int8_speedup") is not None else ""), highlight=False)
    if rec["kept_float"]:
        kept = rec["kept_float"]
        out.print(f"kept in float ({len(kept)}): " + ", ".join(kept[:6]) + (", ... (all in the manifest)" if len(kept) > 6 else ""),
                  highlight=False)
    out.print(f"wrote {output} ({art.model}/{art.variant} -> {target} int8, {len(rec['kept_float'])} layers in float; "
              "the steps are in manifest.json 'accuracy_budget')", highlight=False)
    if not rec["met"]:
        err.print(f"error: the accuracy budget {rec['budget']} was not met in {len(rec['steps'])} steps "
                  "(the closest build kept; see manifest.json 'accuracy_budget')")
        raise typer.Exit(1)


def _print_convert(art: Any, dry_run: bool, target: str, output: Path, strict: bool) -> None:
    m = art.manifest
    for c in m["commands"]:
        out.print(("[dim]would run:[/dim] " if dry_run else "[dim]ran:[/dim] ") + c["cmd"], highlight=False)
    for chk in m.get("checks", []):
        text = chk.get("text") if isinstance(chk, dict) else None
        out.print(f"toolchain check: {text or json.dumps(chk)}", highlight=False)
    if dry_run:
        out.print(f"plan written to {output} (nothing compiled: dry run)")
        return
    parity = m.get("parity", {})
    if parity.get("status") == "not run":
        out.print(f"[yellow]parity not run here: {parity['reason']}[/yellow]")
    elif parity:
        how = (m.get("conversion") or {}).get("summary")
        out.print(f"{target} {m['precision']} artifact ({m['files']['model']}{': ' + how if how else ''}) "
                  f"vs the source ONNX on onnxruntime fp32, {parity['inputs']} inputs: {m['reference']['source']}",
                  style="italic", highlight=False, soft_wrap=True)
        out.print(_parity_table(None, parity))
    verdict = parity.get("toolchain") or {}
    if verdict.get("failed"):
        how = ("decisive (--toolchain-verdict decide)" if verdict.get("decisive") else
               "recorded; hrdeploy's tolerance decides (--toolchain-verdict decide makes it decisive)")
        out.print(f"[yellow]toolchain verdict: {len(verdict['failed'])} of {verdict['verdicts']} similarity "
                  f"checks missed the toolchain's own floor: {how}[/yellow]", highlight=False)
    out.print(f"wrote {output} ({m['model']}/{m['variant']} -> {target} {m['precision']})")
    if parity.get("status") == "failed" and strict:
        why = "its tolerance" if not parity.get("passed", True) else "the toolchain's own similarity floor"
        err.print(f"error: the converted model breaches {why} (artifact kept; see manifest.json 'parity')")
        raise typer.Exit(1)


# -- predict / eval / bench --------------------------------------------------------------------------

def _open(model_file: Path, device: Optional[str], sets: Optional[List[str]],
          declared: Optional[dict[str, dict[str, Any]]] = None) -> Any:
    from .session import open_session

    return open_session(_registry(), model_file, device=device,
                        target_options=_declared_options(declared, "target", sets, "--set"))


@app.command()
@_takes_declared("model", "target")
def predict(model_file: Path = typer.Argument(..., help="Exported .onnx or artifact folder."),
            images: List[Path] = typer.Argument(..., help="Image files or folders."),
            vis: Optional[Path] = typer.Option(None, "--vis", help="Write drawn results into this folder."),
            json_out: Optional[Path] = typer.Option(None, "--json", help="Write the predictions as JSON to this file ('-': standard output, instead of the table)."),
            batch: int = typer.Option(1, "--batch", min=1, help="Batch size."),
            device: Optional[str] = typer.Option(None, "--device", help="Device id(s) or onnxruntime provider."),
            opts: Optional[List[str]] = typer.Option(None, "--opt", help="Model option KEY=VALUE."),
            sets: Optional[List[str]] = typer.Option(None, "--set", help="Target option KEY=VALUE."),
            declared: Optional[dict] = None) -> None:
    """Run a model on images: a table, JSON, and drawn results with --vis."""
    from .io import check_output_file, collect_images, read_image, write_image
    from .model import SampleRef
    from .stream import Stream

    check_output_file(json_out, "--json")
    session = _open(model_file, device, sets, declared)
    paths = collect_images(images)
    from .outputs import check_vis_folder, refuse_overlap

    inputs = [model_file, *images, *paths]
    if vis is not None:
        check_vis_folder(vis, inputs)  # drawings never replace (or join) the images they are drawn from
    if json_out is not None and not _is_stdout(json_out):
        refuse_overlap(json_out, inputs, "--json")
    with session.runner:
        pipeline = session.pipeline(_declared_options(declared, "model", opts, "--opt"))
        stream = Stream(pipeline, session.runner, batch=batch)
        results = []
        for ref, pred in stream.run(SampleRef(p.name if len(paths) == len({q.name for q in paths}) else str(p), p)
                                    for p in paths):
            results.append({"image": str(ref.path), **pred})
            if vis is not None:
                drawn = session.spec.draw(read_image(ref.path), pred)
                write_image(vis / ref.path.name, drawn)
    view = err if _is_stdout(json_out) else out  # standard output carries the JSON alone
    t = Table(title=f"{session.spec.name}/{session.variant.name} on {session.runner.label}", title_justify="left")
    t.add_column("image")
    t.add_column("prediction")
    for r in results:
        t.add_row(r["image"], session.spec.describe({k: v for k, v in r.items() if k != "image"}))
    view.print(t)
    if vis is not None:
        view.print(f"drawn results in {vis}/")
    _write_json(json_out, results)


@app.command("eval")
@_takes_declared("model", "target")
def eval_cmd(model_file: Path = typer.Argument(..., help="Exported .onnx or artifact folder."),
             data: str = typer.Option(..., "--data", help="KIND:PATH, e.g. imagenet:/data/ImageNet or coco:/data/coco."),
             output: Path = typer.Option(Path("result.json"), "-o", "--output", help="Result JSON to write."),
             limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images."),
             batch: int = typer.Option(1, "--batch", min=1, help="Batch size."),
             resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (the same model, data and options only)."),
             restart: bool = typer.Option(False, "--restart", help="Discard an interrupted run of this output and start again."),
             workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decode/preprocess threads."),
             device: Optional[str] = typer.Option(None, "--device", help="Device id(s) or onnxruntime provider."),
             devices: Optional[str] = typer.Option(None, "--devices", help="Comma-separated device ids, one runner (and process) each; onnxruntime: --replicas N."),
             ray: Optional[str] = typer.Option(None, "--ray", help="Run on a Ray cluster: auto (the cluster of this machine or RAY_ADDRESS), ADDRESS (HOST:6379, ray://HOST:10001) or local (a Ray on this machine only). Needs: pip install 'hrdeploy\\[ray]'."),
             ray_actors: Optional[int] = typer.Option(None, "--ray-actors", min=1, help="--ray: actors in the pool (default: as many as the cluster's resources hold)."),
             ray_resources: Optional[str] = typer.Option(None, "--ray-resources", help="--ray: what one actor reserves, as JSON (e.g. '{\"NPU\": 1, \"CPU\": 2}'), instead of what the target declares."),
             skip_missing: bool = typer.Option(False, "--skip-missing", help="Evaluate the images that exist when the label or annotation file names absent ones (they are listed in the result)."),
             compare: Optional[Path] = typer.Option(None, "--compare", help="Also run every evaluated input through this model (e.g. the source .onnx) and compare the outputs; exit 1 on a breach."),
             opts: Optional[List[str]] = typer.Option(None, "--opt", help="Model option KEY=VALUE."),
             sets: Optional[List[str]] = typer.Option(None, "--set", help="Target option KEY=VALUE."),
             declared: Optional[dict] = None) -> None:
    """Evaluate on a dataset with the model's own pre/post-processing and metric."""
    from .evaluation import evaluate, parse_data
    from .io import check_output_file
    from .outputs import option_paths, refuse_overlap

    mopts = {**_declared_options(declared, "model", opts, "--opt"), **({"skip_missing": True} if skip_missing else {})}
    check_output_file(output, "-o")
    refuse_overlap(output, [model_file, compare, parse_data(data)[1], *option_paths(mopts)], "-o")
    cluster = None
    if ray is not None:  # refused before anything is opened: Ray missing, or a placement that contradicts it
        from .cluster import import_ray, parse_resources, ray_executor

        if devices is not None:
            raise UserError("--ray and --devices contradict each other",
                            "a cluster run places its actors by the target's Ray resources")
        import_ray()
        cluster = ray_executor(ray, actors=ray_actors, resources=parse_resources(ray_resources), log=_log)
    elif ray_actors is not None or ray_resources is not None:
        raise UserError("--ray-actors and --ray-resources only apply to a cluster run", "add --ray auto|ADDRESS|local")
    session = _open(model_file, device, sets, declared)
    with session.runner:
        reference = _open(compare, None, None) if compare is not None else None
        with reference.runner if reference is not None else nullcontext():
            from .devices import device_pool, wants_pool

            pool = cluster or (device_pool(devices, device) if wants_pool(session, devices) else None)
            outcome = evaluate(session, data, output, limit=limit, batch=batch, resume=resume, restart=restart,
                               options=mopts, workers=workers, progress=_progress("eval"), log=_log,
                               compare=reference, executor=pool)
    res = outcome.document
    # a two-column table is narrower than its title: rich would wrap the title inside it
    out.print(f"{res['model']}/{res['variant']} on {res['target']} ({res['precision']}), "
              f"{res['data']['evaluated']} images", style="italic", highlight=False, soft_wrap=True)
    t = Table()
    t.add_column("metric")
    t.add_column("value")
    for k, v in outcome.rows:
        t.add_row(k, v)
    out.print(t)
    for size, report in outcome.compare:
        out.print(f"--compare: {report.test} vs {report.reference}, {report.inputs} network inputs of {size} "
                  "from this evaluation", style="italic", highlight=False, soft_wrap=True)
        out.print(_parity_table(None, report))
    if res.get("simulated"):
        out.print("[yellow]ran on a simulator: accuracy is meaningful, speed is not[/yellow]")
    out.print(f"wrote {output}")
    failures = outcome.breaches()
    if failures:
        err.print("error: --compare found a breach: " + "; ".join(failures), markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
@_takes_declared("target")
def bench(model_file: Path = typer.Argument(..., help="Exported .onnx or artifact folder."),
          batch: str = typer.Option("1,4,8,16,32,64", "--batch", help="Batch sizes to sweep."),
          seconds: float = typer.Option(5.0, "--seconds", min=0.01, help="Measuring time per batch size and mode."),
          warmup: int = typer.Option(3, "--warmup", min=0, help="Warm-up runs per batch size."),
          e2e: bool = typer.Option(True, "--e2e/--no-e2e", help="Also measure end-to-end (decode+pre+infer+post)."),
          images_dir: Optional[Path] = typer.Option(None, "--images", help="JPEGs for the end-to-end loop (default: generated)."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON to this file ('-': standard output)."),
          plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot."),
          workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Decode/preprocess threads."),
          device: Optional[str] = typer.Option(None, "--device", help="Device id or onnxruntime provider."),
          devices: Optional[str] = typer.Option(None, "--devices", help="Comma-separated device ids measured at once, one process each; onnxruntime: --replicas N."),
          sets: Optional[List[str]] = typer.Option(None, "--set", help="Target option KEY=VALUE."),
          declared: Optional[dict] = None) -> None:
    """Throughput over batch sizes: device-only and end-to-end, as a table, JSON and a PNG plot."""
    from .benchmark import bench as do_bench
    from .benchmark import plot
    from .io import check_output_file
    from .validate import batch_sizes

    batches = batch_sizes(batch)
    from .outputs import refuse_overlap

    for path, option in ((json_out, "--json"), (plot_out, "--plot")):
        check_output_file(path, option)
        if path is not None and not _is_stdout(path):
            refuse_overlap(path, [model_file, images_dir], option)
    session = _open(model_file, device, sets, declared)
    if isinstance(session.variant.input.batch, int):
        batches = [session.variant.input.batch]
    with session.runner:
        outcome = do_bench(session, batches, seconds=seconds, warmup=warmup, e2e=e2e, images_dir=images_dir,
                           workers=workers, log=_log, devices=devices, device=device)
    view = err if _is_stdout(json_out) else out  # standard output carries the JSON alone
    rep, parity = outcome.document, outcome.parity
    if parity is not None:
        view.print(_parity_table(f"{parity.test} vs {parity.reference} ({parity.inputs} inputs)", parity))
    t = Table(title=f"{rep['model']}/{rep['variant']} on {rep['runner']} ({rep['precision']})", title_justify="left")
    for c in ("batch", "device img/s", "latency ms mean/p50/p99", "e2e img/s", "e2e ms/img decode/pre/infer/post", "iters"):
        t.add_column(c)
    for r in rep["results"]:
        lat = r.get("latency_ms") or {}
        e = r.get("e2e_per_image_ms") or {}
        t.add_row(str(r["batch"]), f"{r['device_ips']:.1f}" if r.get("device_ips") else "-",
                  f"{lat.get('mean', 0):.1f}/{lat.get('p50', 0):.1f}/{lat.get('p99', 0):.1f}" if lat else "-",
                  f"{r['e2e_ips']:.1f}" if r.get("e2e_ips") else "-",
                  "/".join(f"{e.get(k, 0):.1f}" for k in ("decode", "preprocess", "infer", "postprocess")) if e else "-",
                  str(r.get("iterations", "")))
    if rep["results"] or parity is None:  # a simulator has no throughput rows, only its parity
        view.print(t)
    if any(r.get("per_device") for r in rep["results"]):
        from .benchmark import per_device_table

        view.print(per_device_table(rep))
    for s in rep["skipped"]:
        view.print(f"[dim]batch {s['batch']} skipped: {s['reason']}[/dim]")
    if rep.get("note"):
        view.print(f"[yellow]{rep['note']}[/yellow]")
    _write_json(json_out, rep)
    if plot_out:
        plot(rep, plot_out)
        view.print(f"wrote {plot_out}")


@app.command()
@_takes_declared("target")
def verify(model_file: Path = typer.Argument(..., help="Artifact folder (or exported .onnx) carrying reference outputs."),
           device: Optional[str] = typer.Option(None, "--device", help="Device id (or onnxruntime provider)."),
           sets: Optional[List[str]] = typer.Option(None, "--set", help="Target option KEY=VALUE."),
           declared: Optional[dict] = None) -> None:
    """Check an artifact on this machine against the reference outputs stored at conversion.
    Exit 0: within tolerance; 1: breach (names the output); 2: cannot run here."""
    from .verification import verify as do_verify

    outcome = do_verify(_registry(), model_file, device=device,
                        target_options=_declared_options(declared, "target", sets, "--set"))
    report, doc, path = outcome.report, outcome.document, outcome.path
    out.print(_parity_table(f"{doc['target']} {doc['precision']} on {doc['runner']} vs stored onnxruntime fp32 "
                            f"({report.inputs} inputs)", report))
    out.print(f"wrote {path}")
    if not report.passed:
        err.print("error: verify found a breach: " + "; ".join(report.failures()), markup=False, highlight=False)
        raise typer.Exit(1)
    out.print("[green]verify passed[/green]")


@app.command()
@_takes_declared("target")
def matrix(source: Path = typer.Argument(..., help="An .onnx file written by 'hrdeploy export'."),
           output: Optional[Path] = typer.Option(None, "-o", "--output", help="Matrix folder: one sub-folder per cell (default: SOURCE's name + .matrix)."),
           data: Optional[str] = typer.Option(None, "--data", help="KIND:PATH to score every cell on, e.g. imagenet:/data/ImageNet."),
           limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images (a simulator takes seconds per image)."),
           targets: str = typer.Option("all", "--targets", help="all, or target names separated by commas."),
           precisions: Optional[str] = typer.Option(None, "--precisions", help="Only these precisions, e.g. fp32,int8 (default: each target's own)."),
           batch: str = typer.Option("1,8", "--batch", help="Batch sizes to compile and to time."),
           calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration images for int8 (default: generated images)."),
           calib_count: int = typer.Option(32, "--calib-count", min=1, help="How many calibration images (8 more are held out for parity)."),
           seconds: float = typer.Option(3.0, "--seconds", min=0.01, help="Timing per batch size."),
           max_drop: float = typer.Option(0.01, "--max-drop", min=0.0, max=0.99, help="A cell's metric may fall this fraction below the source's (0.01: 1 %)."),
           restart: bool = typer.Option(False, "--restart", help="Redo every cell (a re-run otherwise skips the cells already done with the same settings)."),
           json_out: Optional[Path] = typer.Option(None, "--json", help="Write every cell as JSON to this file ('-': standard output)."),
           plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of throughput against accuracy."),
           sets: Optional[List[str]] = typer.Option(None, "--set", help="Option of one target TARGET.KEY=VALUE, e.g. sophon.chip=bm1684x (a declared flag such as --chip goes to every target declaring it)."),
           opts: Optional[List[str]] = typer.Option(None, "--opt", help="Model option KEY=VALUE (calibration and evaluation)."),
           declared: Optional[dict] = None) -> None:
    """Every installed target x each precision it supports: convert (or write the plan where the
    toolchain is absent), parity, metric on --data, device-only throughput and size, in one table,
    a JSON and a plot. Exit 1 when a cell breaches its parity or metric floor."""
    from .io import check_output_file
    from .matrix import COLUMNS, Settings, plan_cells, plot, run_matrix, split_target_options, table_rows
    from .validate import batch_sizes

    batches = batch_sizes(batch)
    for path, option in ((json_out, "--json"), (plot_out, "--plot")):
        check_output_file(path, option)
    reg = _registry()
    cells = plan_cells(reg, targets, precisions)
    chosen = list({t.name: t for t, _ in cells}.values())
    settings = Settings(batches=batches, data=data, limit=limit, calib=calib, calib_count=calib_count,
                        seconds=seconds, max_drop=max_drop,
                        target_options=split_target_options(reg, chosen, sets, (declared or {}).get("target")),
                        model_options=_declared_options(declared, "model", opts, "--opt"))
    folder = output if output is not None else source.with_name(source.stem + ".matrix")
    result = run_matrix(source, folder, cells, settings, restart=restart, log=_log, progress=_progress("matrix"))
    view = err if _is_stdout(json_out) else out  # standard output carries the JSON alone
    doc = result.document
    src_eval = doc.get("source_eval") or {}
    title = f"{doc['source']['model']}/{doc['source']['variant']} ({Path(doc['source']['path']).name})"
    if src_eval.get("metric"):
        m = src_eval["metric"]
        title += f"; source on {src_eval.get('runner')}: {m['name']} {m['value']:.2f} on {src_eval['images']} images"
    t = Table(title=title, title_justify="left")
    for c in COLUMNS:
        t.add_column(c, overflow="fold")
    for row in table_rows(result.cells):
        t.add_row(*row, style="red" if row[2].startswith(("converted, parity", "metric below")) else None)
    view.print(t)
    if len(batches) > 1:
        view.print(f"ms/img and img/s: device only, at batch {' / '.join(map(str, batches))}", style="dim")
    view.print(f"cells in {folder}/ ({result.path.name})", highlight=False)
    _write_json(json_out, doc)
    if plot_out:
        plot(result, plot_out)
        view.print(f"wrote {plot_out}", highlight=False)
    if result.breaches:
        err.print("error: " + ", ".join(f"{c.target} {c.precision}" for c in result.breaches)
                  + " breached a parity or metric floor (cells kept)", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
@_takes_declared("model")
def debug(model_file: Path = typer.Argument(..., help="Artifact folder made by 'hrdeploy convert'."),
          source: Optional[Path] = typer.Option(None, "--source", help="The exported .onnx it was converted from (default: the path its manifest records)."),
          data: Optional[str] = typer.Option(None, "--data", help="KIND:PATH: compare on these images through the model's own preprocessing (default: the artifact's reference inputs)."),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use the first N images (or reference inputs)."),
          threshold: Optional[float] = typer.Option(None, "--threshold", min=-1.0, max=1.0, help="Cosine a layer must reach (default per precision: fp32 0.99999, fp16 0.999, int8 0.99)."),
          top: int = typer.Option(12, "--top", min=1, help="Layers shown in the table (the first below the threshold and the worst by added error)."),
          json_out: Optional[Path] = typer.Option(None, "--json", help="Write every layer's figures as JSON ('-': standard output)."),
          plot_out: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of cosine along the depth."),
          keep: Optional[Path] = typer.Option(None, "--keep", help="Keep the target's dump files in this folder."),
          plan_out: Optional[Path] = typer.Option(None, "--plan", help="Folder for the device machine's dump plan (targets that run only there)."),
          from_dump: Optional[Path] = typer.Option(None, "--from-dump", help="Read back a dump plan folder after its commands ran on the device machine."),
          opts: Optional[List[str]] = typer.Option(None, "--opt", help="Model option KEY=VALUE."),
          declared: Optional[dict] = None) -> None:
    """Where does a converted model lose accuracy? Every layer compared with the source ONNX:
    cosine, max relative error and SQNR in topological order, the first layer below the
    threshold, and the layers ranked by the error they add. Exit 1 when a layer is below it."""
    from .debugging import debug as do_debug
    from .io import check_output_file
    from .layerwise import plot, worst_rows
    from .outputs import refuse_overlap

    for path, option in ((json_out, "--json"), (plot_out, "--plot")):
        check_output_file(path, option)
        if path is not None and not _is_stdout(path):
            refuse_overlap(path, [model_file, source], option)
    outcome = do_debug(_registry(), model_file, source, data=data, limit=limit, threshold=threshold, keep=keep,
                       from_dump=from_dump, plan_out=plan_out,
                       options=_declared_options(declared, "model", opts, "--opt"), log=_log)
    view = err if _is_stdout(json_out) else out
    rep = outcome.report
    if rep is None:
        view.print(f"layer dump plan written to {outcome.plan_folder}; on the device machine run:")
        for c in outcome.commands:
            view.print(f"  {c['cmd']}" + (f"    [dim]# {c['note']}[/dim]" if c.get("note") else ""), highlight=False)
        view.print(f"then: hrdeploy debug {model_file} --from-dump {outcome.plan_folder}", highlight=False)
        _write_json(json_out, outcome.to_json())
        return
    art = outcome.artifact
    t = Table(title=f"{art.describe()}: {len(rep.rows)} layers vs {rep.reference} ({rep.inputs} inputs); "
                    f"worst {min(top, len(rep.rows))} shown", title_justify="left")
    for c in ("#", "layer (source tensor)", "op", "cosine", "max rel", "SQNR dB", "noise added dB", ""):
        t.add_column(c)
    first, origin = rep.first_below, rep.origin
    ranked = {r.index: i + 1 for i, r in enumerate(rep.ranked)}

    def fmt(v: Optional[float], spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for r in worst_rows(rep, top):
        marks = ["first diverging" if origin is not None and r.index == origin.index else "",
                 "first below threshold" if first is not None and r.index == first.index else "",
                 f"rank {ranked[r.index]} by added noise" if ranked[r.index] <= 3 else ""]
        t.add_row(str(r.index), r.tensor, r.converted.rsplit(" ", 1)[-1].strip("()") if r.converted else r.op_type, fmt(r.cosine, ".6f"), fmt(r.max_rel, ".2e"),
                  fmt(r.sqnr_db, ".1f"), fmt(r.added_noise_db, ".1f"), ", ".join(x for x in marks if x))
    view.print(t)
    for note in rep.notes:
        view.print(f"[dim]{note}[/dim]", highlight=False)
    worst = rep.ranked[0]
    if first is None:
        view.print(f"[green]every layer at cosine >= {rep.threshold:g}[/green] (lowest {rep.min_cosine:.6f}); "
                   f"most noise added by {worst.tensor} ({worst.added_noise_db:.1f} dB)", highlight=False)
    else:
        view.print(f"first layer below cosine {rep.threshold:g}: {first.tensor} ({first.op_type}, cosine "
                   f"{first.cosine:.6f})", highlight=False)
    if origin is not None:
        view.print(f"first diverging layer (the loss starts there): {origin.tensor}, computed by "
                   f"{origin.converted or origin.node + ' (' + origin.op_type + ')'}: it adds noise at "
                   f"{origin.added_noise_db:.1f} dB of its signal by itself (the threshold allows "
                   f"{rep.to_dict()['noise_budget_db']:.1f} dB)", highlight=False)
    elif first is not None:
        view.print(f"no single layer breaks the threshold by itself: the loss accumulates; most noise added by "
                   f"{worst.tensor} ({worst.added_noise_db:.1f} dB)", highlight=False)
    _write_json(json_out, outcome.to_json())
    if plot_out:
        plot(rep, plot_out, f"{art.describe()} vs source, layer by layer")
        view.print(f"wrote {plot_out}")
    if first is not None:
        raise typer.Exit(1)


@app.command()
def samples(output: Path = typer.Argument(..., help="Folder to write the images into."),
            count: int = typer.Option(8, "--count", min=1, max=100000, help="How many images."),
            seed: int = typer.Option(0, "--seed", help="Seed (the same seed gives the same images).")) -> None:
    """Write synthetic photograph-like JPEGs: for trying the tools without a dataset."""
    from .synthetic import write_images

    paths = write_images(output, count, seed=seed)
    out.print(f"wrote {len(paths)} synthetic images to {output}")


@app.command()
def gears(model: str = typer.Argument(..., help="Model name (see 'hrdeploy list')."),
          data: str = typer.Option(..., "--data", help="KIND:PATH whose image sizes to fit, e.g. coco:/data/coco."),
          variant: Optional[str] = typer.Option(None, "--variant", help="Variant (default: the model's first)."),
          budget: int = typer.Option(5, "--budget", help="At most this many gears."),
          align: int = typer.Option(64, "--align", help="Gear sides are multiples of this."),
          max_side: int = typer.Option(1024, "--max-side", help="Longest gear side; longer images are cropped to it."),
          output: Optional[Path] = typer.Option(None, "-o", "--output", help="JSON for 'convert --gears FILE' ('-': standard output)."),
          plot: Optional[Path] = typer.Option(None, "--plot", help="PNG: images per gear and padded share.")) -> None:
    """Choose the static size gears (at most --budget) with the fewest padded pixels on a dataset (exact)."""
    from .evaluation import parse_data
    from .gears import model_gear_report, plot_report
    from .io import check_output_file
    from .outputs import refuse_overlap

    kind, path = parse_data(data)
    for file, flag in ((output, "-o"), (plot, "--plot")):
        if file is not None and not _is_stdout(file):
            check_output_file(file, flag)
            refuse_overlap(file, [path], flag)
    spec = _registry().model(model)
    var = spec.variant(variant)
    rep = model_gear_report(spec, var, kind, path, budget=budget, align=align, max_side=max_side)
    show = err if _is_stdout(output) else out      # keep standard output for the JSON alone
    show.print(f"{rep['model']}/{rep['variant']}: {rep['images']} images ({rep['data']['source']}), "
               f"budget {rep['budget']}, align {rep['align']}, max side {rep['max_side']}; exact optimum",
               style="italic", highlight=False, soft_wrap=True)
    t = Table(title="chosen gears", title_justify="left")
    for c in ("gear (HxW)", "images", "share", "padded px", "padded share", "compute px", "cropped"):
        t.add_column(c)
    for r in rep["per_gear"]:
        t.add_row(f"{r['gear'][0]}x{r['gear'][1]}", str(r["images"]), f"{100 * r['share']:.1f}%",
                  f"{r['padded_pixels']:,}", f"{100 * r['padded_share']:.1f}%", f"{r['compute_pixels']:,}",
                  str(r["cropped_images"]))
    show.print(t)
    c = Table(title="comparison", title_justify="left")
    for col in ("set", "gears", "padded px", "compute px", "padded saved", "compute saved"):
        c.add_column(col)
    names = {"seed": "variant's gears", "one_gear": "one gear per chain"}
    c.add_row("chosen", " ".join(f"{g[0]}x{g[1]}" for g in rep["gears"]), f"{rep['padded_pixels']:,}",
              f"{rep['compute_pixels']:,}", "", "")
    for key, b in rep["baselines"].items():
        pct = ["-" if v is None else f"{100 * v:.1f}%" for v in (b["padded_saving"], b["compute_saving"])]
        note = f" ({b['refused_images']} images refused)" if b["refused_images"] else ""
        c.add_row(names.get(key, key) + note, " ".join(f"{g[0]}x{g[1]}" for g in b["gears"]),
                  f"{b['padded_pixels']:,}", f"{b['compute_pixels']:,}", *pct)
    show.print(c)
    if plot is not None:
        plot_report(rep, plot)
        show.print(f"wrote {plot}", highlight=False)
    _write_json(output, rep)


# -- toolchains -----------------------------------------------------------------------------------

@toolchain_app.command("install")
def toolchain_install(target: str = typer.Argument(..., help="Target whose toolchain to provision (see the capabilities in 'hrdeploy list --json')."),
                      python: Optional[str] = typer.Option(None, "--python", help="Interpreter for the toolchain environment.")) -> None:
    """Create the toolchain environment a target needs (e.g. TPU-MLIR in a Python 3.10 venv)."""
    out.print(_registry().target(target).install_toolchain(python), highlight=False)


# -- plugins -------------------------------------------------------------------------------------

@plugin_app.command("new")
def plugin_new(kind: str = typer.Argument(..., help="model or target."),
               name: str = typer.Argument(..., help="The plugin's name, e.g. resnet or mychip."),
               output: Optional[Path] = typer.Option(None, "-o", "--output", help="Folder to create (default: ./hrdeploy-KIND-NAME).")) -> None:
    """Write a package skeleton for a new plugin: pyproject with the entry point, the plugin
    module, a spec or target, and contract tests that pass once it is pip-installed."""
    from .scaffold import new_plugin

    dest, files = new_plugin(kind, name, output)
    for f in files:
        out.print(f"wrote {f}", highlight=False)
    out.print(f"next: cd {dest} && pip install -e '.[test]' && pytest", highlight=False, markup=False)


# -- entry point ------------------------------------------------------------------------------------

def _usage_line(exc: BaseException) -> str:
    """A click/typer usage error as one line, with the command's own --help to read."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None) or "hrdeploy"
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    message = " ".join(message.split()).rstrip(".")
    return f"error: {message} (see '{command} --help')"


def _is_usage_error(exc: BaseException) -> bool:
    # typer >= 0.2x vendors click as typer._click; older releases raise click's own classes.
    # Both carry the same duck type, so no import of either is needed here.
    return isinstance(exc, Exception) and hasattr(exc, "format_message") and hasattr(exc, "exit_code") \
        and type(exc).__name__ != "Exit"


def _fail(line: str, code: int) -> int:
    if _state["debug"]:
        traceback.print_exc()
    err.print(line, highlight=False, markup=False, soft_wrap=True)
    return code


def _sigterm_interrupts() -> None:
    """SIGTERM (a CI job cancelled, ``kill``) ends a command as Ctrl-C does: temporary files
    removed, partial results kept, child tools stopped, exit 130 — not a silent death."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def _dispatch(argv: Optional[list[str]]) -> int:
    """Run one command and map every way it can end to an exit code (see EXIT_CODES_HELP)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _state["debug"] = "--debug" in args[: args.index("--") if "--" in args else None]
    interrupted = ("interrupted: what was written so far is kept "
                   "(an interrupted eval continues with --resume)")
    _sigterm_interrupts()
    try:
        _install_plugin_parts(_registry())
        rv = app(args=args, prog_name="hrdeploy", standalone_mode=False)
        if rv == EXIT_INTERRUPTED:  # typer >= 0.2x turns KeyboardInterrupt into Exit(130) itself
            return _fail(interrupted, EXIT_INTERRUPTED)
        return rv if isinstance(rv, int) else 0
    except UserError as e:
        return _fail(f"error: {e}", EXIT_USER)
    except ParityError as e:
        return _fail(f"error: {e}", EXIT_BREACH)
    except KeyboardInterrupt:
        return _fail(interrupted, EXIT_INTERRUPTED)
    except typer.Exit as e:
        return _fail(interrupted, EXIT_INTERRUPTED) if e.exit_code == EXIT_INTERRUPTED else e.exit_code
    except typer.Abort:  # older click turns KeyboardInterrupt into Abort
        return _fail(interrupted, EXIT_INTERRUPTED)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _fail(f"error: {e.code}", EXIT_USER))
    except BrokenPipeError:
        # `hrdeploy list --json | head`: the reader went away; nothing to report
        sys.stdout = None  # type: ignore[assignment]  # no flush of a closed pipe at exit
        return EXIT_OK
    except OSError as e:
        return _fail(f"error: {describe_os_error(e)}", EXIT_USER)
    except UnicodeDecodeError as e:
        return _fail(f"error: a text file is not UTF-8 ({e.reason} at byte {e.start}): "
                     "save it as UTF-8", EXIT_USER)
    except MemoryError:
        return _fail("error: out of memory (lower --batch or --workers)", EXIT_USER)
    except Exception as e:
        if _is_usage_error(e):
            if type(e).__name__ == "NoArgsIsHelpError":  # a bare `hrdeploy` or `hrdeploy toolchain`
                text = e.format_message()  # type: ignore[attr-defined]
                if text.strip():  # typer's rich help has already printed itself
                    err.print(text, highlight=False, markup=False)
                return EXIT_USER
            return _fail(_usage_line(e), EXIT_USER)
        detail = " ".join(str(e).split())[:300]
        return _fail(f"internal error: {type(e).__name__}: {detail}; run with --debug for the traceback "
                     "and report it", EXIT_INTERNAL)


def main(argv: Optional[list[str]] = None) -> None:
    """The ``hrdeploy`` console script: returns on success (so that a library caller may call
    it), exits with the code of :func:`_dispatch` otherwise."""
    code = _dispatch(argv)
    if code:
        sys.exit(code)
