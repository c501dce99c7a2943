"""``edgehad search``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option, model_spec, progress_printer


@click.command()
@click.argument("model")
@click.option("--weights", type=click.Path(dir_okay=False),
              help="State dict: .pt/.pth (loaded with weights_only=True) or .safetensors, as for convert.")
@click.option("--model-arg", multiple=True, metavar="KEY=VALUE",
              help="Keyword argument for the factory (value is a TOML literal).")
@click.option("--data", required=True, metavar="SPEC",
              help="Data spec (digits, file.npz, module:function): each trial's accuracy is top-1 on its val split.")
@click.option("--target", default=None, metavar="NAME",
              help="Where latency counts (default local, timed here): a device from targets/ is timed on --host, "
                   "or without one estimated by its roofline; emulated-aarch64 runs under qemu (emulated). An MCU "
                   "target (a description with flash_kb) also measures ram_kb and flash_kb under TFLite Micro.")
@click.option("--host", default=None, metavar="ssh://user@host[:port]|NAME",
              help="Time every trial's file on this device over SSH (one at a time).")
@click.option("--space", default=None, metavar="NAME|SPACE.toml",
              help="Search space: a recipe whose values may be {choices = [...]} or {low, high, step|log} "
                   "(default: the shipped 'default').")
@click.option("--budget", default=None, metavar="latency_ms=5,size_kb=300,ram_kb=256,flash_kb=1024,accuracy=0.95",
              help="Bounds every front member meets (latency_ms, size_kb, ram_kb, flash_kb: most; accuracy: least). "
                   "ram_kb and flash_kb need an MCU --target.")
@click.option("--objectives", default="accuracy,latency,size", show_default=True, metavar="accuracy,latency,size",
              help="What to optimize: accuracy (max), latency, size, ram, flash (min; ram and flash: MCU target).")
@click.option("--trials", type=int, default=None, help="Trials to run (default 20).")
@click.option("--minutes", type=float, default=None, help="Instead of --trials: start no new generation after this.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Trials at once, each in its own worker process (1 thread each).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Sampler seed: the same seed gives the same trials whatever --jobs.")
@click.option("--ray", default=None, metavar="auto|HOST:PORT",
              help="Run the trials as tasks on this Ray cluster (auto: this machine's, else one started for the "
                   "search); needs pip install 'edgehad[ray]'. Each board timed on is the Ray resource "
                   "edgehad-device:local (this node) or edgehad-device:HOST, capacity 1.")
@click.option("--resume", is_flag=True, help="Finish the search stored in --out (kept trials are not run again).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Search folder: study.db, search.json, trials/K/, front/K/.")
@json_option
@debug_option
@command_errors(stopped="the trials finished so far are kept in the `out` folder; `resume` finishes the search")
def search(model, weights, model_arg, as_json, debug, **options):
    """Search MODEL's recipe space for the Pareto front of accuracy, latency and size.

    Each trial is a real conversion (verified files), its accuracy measured from the exported
    file on --data's val split, its latency timed on the target. Results: search.json, and
    front/K/ with each front member's files and the recipe that `edgehad convert --recipe`
    turns back into them.
    """
    from edgehad.api import search as api_search
    from edgehad.core.capture import captured

    progress = progress_printer()
    spec = model_spec(model_arg, weights, ())  # the conversion's own reading of --model-arg and --weights
    with captured():
        doc = api_search(model, weights=spec["weights"], model_args=spec["model_args"] or None, progress=progress,
                         **options)
    if as_json:
        emit_json(doc)
    else:
        _print(doc)


def _print(doc: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console(highlight=False)
    trials = doc["trials"]
    counts = {s: sum(t["status"] == s for t in trials) for s in ("complete", "over_budget", "failed")}
    out.print(f"[bold]{doc['model']}[/]: {len(trials)} trials ({counts['complete']} complete, "
              f"{counts['over_budget']} over budget, {counts['failed']} failed); Pareto front of "
              f"{', '.join(f'{k} ({v})' for k, v in doc['objectives'].items())}: {len(doc['front'])} trial(s)")
    names = list(trials[0]["params"]) if trials else []
    timed = any(t["metrics"].get("latency_ms") is not None for t in trials)
    micro = any(t["metrics"].get("ram_kb") is not None for t in trials)
    table = Table(show_edge=False)
    for col in ("trial", "accuracy", "drop pts", *(("latency ms",) if timed else ()), "size KiB",
                *(("RAM KiB", "flash KiB") if micro else ()), *names):
        # "[prune] ratio" is no rich markup
        table.add_column(escape(col), justify="left" if col == "trial" or col.startswith("[") else "right")
    by_number = {t["number"]: t for t in trials}
    for number in doc["front"]:
        t = by_number[number]
        m = t["metrics"]
        latency = "-" if m.get("latency_ms") is None else f"{m['latency_ms']:.3g}" + (
            "" if m.get("latency_source") == "measured" else f" ({m['latency_source']})")
        # the drop against the original model on the same val samples: what a reconversion of this
        # member with its recipe is judged by (verify's max_accuracy_drop)
        drop = "-" if m.get("accuracy_drop") is None else f"{m['accuracy_drop']:.1f}"
        table.add_row(str(number), "-" if m.get("accuracy") is None else f"{100 * m['accuracy']:.1f}%", drop,
                      *((latency,) if timed else ()), f"{m['size_kb']:.1f}",
                      *((f"{m['ram_kb']:.1f}", f"{m['flash_kb']:.1f}") if micro else ()),
                      *(escape(str(t["params"].get(n))) for n in names))
    out.print(table)
    out.print(f"front: {doc['front_dir']}/K (files + recipe.toml); every trial: {doc['out']}/search.json; "
              f"the page: {doc['page']}")
