"""``edgehad osr fit`` and ``edgehad osr eval``: open-set recognition with COSTARR."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option, model_options, model_spec


@click.group()
def osr():
    """Open-set recognition: fit COSTARR statistics, evaluate known/unknown scores.

    \b
      edgehad osr fit zoo:digits_cnn --data digits --out stats.npz
      edgehad osr eval zoo:digits_cnn --stats stats.npz \\
          --known 'digits?classes=0-5' --unknown 'digits?classes=6-9' --plot oscr.svg
    """


def _warner(con):
    from edgehad.cli.flags import speak_flags

    def warn(msg: str) -> None:  # warnings reach stderr, --json or not
        con.print(f"[yellow]warning: {speak_flags(msg)}[/]")
    return warn


@osr.command()
@click.argument("model")
@model_options
@click.option("--data", required=True, metavar="SPEC", help="Labelled data; the train split is fitted on (correctly classified samples only).")
@click.option("--normalize", metavar="MEAN,STD", help="Normalisation applied to --data (as in convert).")
@click.option("--classifier", metavar="MODULE", help="Name of the final nn.Linear (default: found automatically).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Statistics file to write (.npz).")
@json_option
@debug_option
@command_errors
def fit(model, model_arg, weights, input_shape, data, normalize, classifier, out, as_json, debug):
    """Fit COSTARR statistics of MODEL (z_min, z_max, per-class mean features) on --data.

    MODEL is path/to/file.py:factory, package.module:factory or zoo:NAME. The
    file is written atomically and carries a fingerprint of the model.
    """
    from edgehad import api
    from edgehad.core.capture import captured, console

    con = console()
    with captured():
        summary = api.osr_fit(model, data, out, classifier=classifier, normalize=normalize,
                          **model_spec(model_arg, weights, input_shape), warn=_warner(con))
    if as_json:
        emit_json(summary)
        return
    click.echo(f"wrote {summary['out']}: classifier {summary['classifier']} (D={summary['features']}, "
               f"C={summary['classes']}), fitted on {summary['correct']}/{summary['samples']} correctly "
               f"classified train samples, z in [{summary['z_min']:.3f}, {summary['z_max']:.3f}]")
    if summary["excluded"]:
        click.echo(f"excluded classes (no correct sample): {', '.join(map(str, summary['excluded']))}")


@osr.command(name="eval")
@click.argument("model")
@model_options
@click.option("--stats", "stats_path", type=click.Path(dir_okay=False), metavar="FILE.npz",
              help="Statistics from `osr fit` (needed for a MODEL spec; an exported file carries its own head).")
@click.option("--known", required=True, metavar="SPEC", help="Known inputs; labels are the model's class indices.")
@click.option("--unknown", required=True, metavar="SPEC", help="Unknown inputs (labels unused).")
@click.option("--split", type=click.Choice(["val", "train"]), default="val", show_default=True, help="Which split of both specs to score.")
@click.option("--normalize", metavar="MEAN,STD", help="Normalisation applied to both data sets.")
@click.option("--plot", type=click.Path(dir_okay=False), metavar="FILE.svg",
              help="Write the OSCR curves of every score to this SVG file (opens in any browser).")
@json_option
@debug_option
@command_errors
def eval_(model, model_arg, weights, input_shape, stats_path, known, unknown, split, normalize, plot, as_json, debug):
    """AUROC, FPR at 95% TPR and AUOSCR of every score: COSTARR, its ablations, MSP, MaxLogit, Energy.

    MODEL is a MODEL spec (with --stats) or an exported .onnx / .tflite with
    outputs (logits, known_score) from `edgehad convert --osr`: there COSTARR
    is the file's own known_score and pre-only / post-only are n/a.
    """
    from edgehad import api
    from edgehad.core.capture import captured, console

    con = console()
    if stats_path and str(model).endswith((".onnx", ".tflite")):
        con.print(f"[dim]note: {model} carries its own head; --stats is not used[/]")
    with captured():
        result = api.osr_eval(model, known, unknown, stats=stats_path, normalize=normalize, split=split, plot=plot,
                              **model_spec(model_arg, weights, input_shape), warn=_warner(con))
    if as_json:
        emit_json(result)
    else:
        _print(result)


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(highlight=False)
    k, u = result["known"], result["unknown"]
    out.print(f"[bold]{result['model']}[/] ({result['source']}), {result['split']} split: "
              f"{k['samples']} known ({k['spec']}, closed-set accuracy {k['accuracy']:.1%}), "
              f"{u['samples']} unknown ({u['spec']})")
    table = Table(show_edge=False)
    for col in ("score", "AUROC", "FPR@95TPR", "AUOSCR"):
        table.add_column(col, justify="left" if col == "score" else "right")
    for name, m in result["scores"].items():
        if m is None:
            table.add_row(name, "n/a", "n/a", "n/a")
        else:
            table.add_row(name, f"{m['auroc']:.4f}", f"{m['fpr95']:.4f}", f"{m['auoscr']:.4f}")
    out.print(table)
    out.print("higher AUROC/AUOSCR and lower FPR@95TPR are better")
    if result["plot"]:
        out.print(f"plot: {result['plot']}")
