"""``edgehad rewrite --list`` and ``edgehad rewrite MODEL --explain``."""

from __future__ import annotations

import click

from edgehad.cli.common import command_errors, debug_option, emit_json, json_option, model_options, model_spec


@click.command()
@click.argument("model", required=False)
@click.option("--list", "list_rules", is_flag=True, help="List the rules: what each matches, what it costs/saves.")
@click.option("--explain", is_flag=True, help="Show which modules of MODEL each rule would rewrite, and why not the others.")
@click.option("--rule", "rule_names", metavar="RULE[,RULE...]", help="Only these rules (default: all).")
@model_options
@json_option
@debug_option
@command_errors
def rewrite(model, list_rules, explain, rule_names, model_arg, weights, input_shape, as_json, debug):
    """List the rewrite rules, or explain what they would do to MODEL (nothing is changed).

    To apply rules, use `edgehad convert MODEL --rewrite RULE[,RULE...]`.
    """
    from edgehad.core.errors import UserInputError

    if list_rules == bool(model):
        raise UserInputError("use `edgehad rewrite --list` or `edgehad rewrite MODEL --explain`")
    if model and not explain:
        raise UserInputError("`edgehad rewrite MODEL` needs --explain (to apply rules: edgehad convert --rewrite)")
    from edgehad import api

    if list_rules:
        result = api.rewrite_rules()
        if as_json:
            emit_json(result)
        else:
            _print_rules(result)
        return
    from edgehad.core.capture import captured

    with captured():
        result = api.explain_rewrite(model, rules=rule_names, **model_spec(model_arg, weights, input_shape))
    if as_json:
        emit_json(result)
    else:
        _print_explain(result)


def _print_rules(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("rule", "matches", "costs / saves"):
        table.add_column(col)
    for r in result:
        table.add_row(r["rule"], r["matches"], r["effect"])
    Console(highlight=False).print(table)


def _print_explain(result) -> None:
    from rich.console import Console
    from rich.markup import escape

    out = Console(highlight=False)
    for r in result:
        out.print(f"[bold]{r['rule']}[/]")
        if r.get("note"):
            out.print(f"  no match: {r['note']}")
        for name in r["rewritten"]:
            how = r.get("how", {}).get(name)  # rules with more than one way say which (fold-se: fold or scale)
            out.print(f"  [green]would rewrite[/] {name}" + (f": {escape(how)}" if how else ""))
        for name, reason in r["skipped"].items():
            out.print(f"  [yellow]leaves[/] {name}: {reason}")
