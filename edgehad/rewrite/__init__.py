"""Rewrite rules: find structures in a model and replace them with Hadamard-product blocks.

A rule is one file in this package defining a ``Rule`` subclass decorated with
``@rule``. It has
- ``match(model)``: the candidate modules, found by class *or by structure*
  (a Linear -> activation -> Linear run, a module holding q/k/v projections);
- ``check(name, module, model, calls)``: ``None`` when the candidate qualifies,
  otherwise the reason it does not (``edgehad rewrite MODEL --explain`` prints
  these). ``calls`` records how the module was called on the example inputs
  (masks, cross-attention), so a rule can refuse what it cannot keep;
- ``rewrite(name, module, model)``: the replacement, initialised from the
  original's weights where possible;
- optionally ``measure(name, module, args, kwargs)``: what ``rewrite`` needs to
  know of the candidate's calls on the *statistics inputs* (e.g. the mean of a
  gate). A rule that defines it gets the list of these, one per batch, as
  ``rewrite(name, module, model, stats=...)``; ``apply_rules(...,
  stats_inputs=)`` gives real samples (the rewrite stage: up to 64 train
  samples), else the example inputs serve;
- optionally ``describe(name, module, model)``: how this candidate would be
  rewritten, when a rule has more than one way (the report's ``how``);
- ``example()``: a small model the generic test rewrites, exports and runs.

``apply_rules`` rewrites a copy of the model; the original is never touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.core.registry import import_submodules


class Rule:
    name: str = ""
    matches: str = ""            # what it looks for, in words
    effect: str = ""             # what it costs or saves
    changes_function: bool = True

    def match(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        raise NotImplementedError

    def check(self, name: str, module: nn.Module, model: nn.Module, calls: dict) -> str | None:
        return None

    def rewrite(self, name: str, module: nn.Module, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def measure(self, name: str, module: nn.Module, args: tuple, kwargs: dict):
        """A summary of one call of the candidate on the statistics inputs (overridden by rules that need one)."""
        return None

    def describe(self, name: str, module: nn.Module, model: nn.Module) -> str | None:
        return None

    @property
    def measures(self) -> bool:
        return type(self).measure is not Rule.measure

    def example(self):
        raise NotImplementedError


_RULES: dict[str, Rule] = {}


def rule(cls):
    _RULES[cls.name] = cls()
    return cls


def rules() -> dict[str, Rule]:
    import_submodules(__name__)
    return dict(sorted(_RULES.items()))


def get_rules(names) -> list[Rule]:
    known = rules()
    names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not names:
        raise UserInputError(f"no rewrite rule named: give one or more of {', '.join(known)}")
    bad = [n for n in names if n not in known]
    if bad:
        raise UserInputError(f"unknown rewrite rule {bad[0]!r}: valid rules are {', '.join(known)}")
    return [known[n] for n in names]


@dataclass
class RuleReport:
    rule: str
    rewritten: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # candidate -> reason
    note: str = ""                                          # why nothing matched at all
    how: dict[str, str] = field(default_factory=dict)       # rewritten candidate -> how (rules with choices)

    def as_dict(self) -> dict:
        return {"rule": self.rule, "rewritten": self.rewritten, "skipped": self.skipped,
                **({"note": self.note} if self.note else {}), **({"how": self.how} if self.how else {})}


STATS_BATCH = 16  # statistics inputs run in batches of this many rows: memory stays bounded


def record_calls(model: nn.Module, example_inputs: tuple, modules: dict[str, nn.Module], reduce=None,
                 batch: int | None = None) -> dict:
    """How each of ``modules`` was called on the example inputs: {name: [(args, kwargs), ...]}.

    ``reduce(name, module, args, kwargs)``: keep its result instead of the call (a summary, so a large
    input is not held); ``batch``: run the inputs' rows in batches of this many.
    """
    import torch

    keep = reduce or (lambda name, mod, args, kwargs: (args, kwargs))
    calls: dict[str, list] = {name: [] for name in modules}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, kwargs, name=name: calls[name].append(keep(name, mod, args, kwargs)), with_kwargs=True)
        for name, m in modules.items()]
    batches = [tuple(t[i:i + batch] for t in example_inputs) for i in range(0, len(example_inputs[0]), batch)] \
        if batch else [example_inputs]
    try:
        with torch.no_grad():
            model.eval()
            for inputs in batches:
                model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return calls


def explain(model: nn.Module, example_inputs: tuple, rule_list: list[Rule]) -> list[RuleReport]:
    """What each rule would do, without changing anything."""
    return _run(model, example_inputs, rule_list, change=False)[1]


def apply_rules(model: nn.Module, example_inputs: tuple, rule_list: list[Rule], *, stats_inputs: tuple | None = None):
    """A rewritten copy of ``model`` and one report per rule.

    ``stats_inputs``: a batch of real inputs (one tensor per model input, samples along dim 0) on which
    rules that measure something (``Rule.measure``) take their statistics; default: the example inputs.
    """
    return _run(copy.deepcopy(model), example_inputs, rule_list, change=True, stats_inputs=stats_inputs)


def _run(model, example_inputs, rule_list, change: bool, stats_inputs=None):
    reports = []
    for r in rule_list:
        report = RuleReport(r.name)
        candidates = r.match(model)
        if not candidates:
            report.note = f"nothing in this model looks like: {r.matches}"
        calls = record_calls(model, example_inputs, dict(candidates)) if candidates else {}
        stats = {}
        if change and candidates and r.measures:  # measured on the model as it is before this rule changes it
            stats = record_calls(model, stats_inputs or example_inputs, dict(candidates), reduce=r.measure,
                                 batch=STATS_BATCH if stats_inputs else None)
        for name, module in candidates:
            reason = r.check(name, module, model, calls.get(name, []))
            if not calls.get(name) and reason is None:
                reason = "not called on the example inputs (unused module)"
            if change and r.measures and not stats.get(name) and reason is None:
                reason = "not called on the statistics inputs: nothing to measure"
            if reason:
                report.skipped[name] = reason
                continue
            report.rewritten.append(name)
            how = r.describe(name, module, model)
            if how:
                report.how[name] = how
            if change:
                extra = {"stats": stats[name]} if r.measures else {}  # other rules keep the 3-argument rewrite
                replace_module(model, name, r.rewrite(name, module, model, **extra))
        reports.append(report)
    return model, reports


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
