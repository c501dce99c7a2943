"""Depth pruning: remove whole residual blocks, the ones that change their input least.

A residual block computes y = x + f(x). Removing it (y = x) takes away every op of f, which
channel pruning cannot: a narrower layer is still one kernel launch, and on small inputs
(a 32x32 EfficientNet-B0 runs ~250 TFLite ops in 0.2 ms) the per-op cost, not the MACs, is the
latency. Which blocks: the lowest Block Influence (Men et al. 2024, "ShortGPT: Layers in Large
Language Models are More Redundant Than You Expect"),

    BI = 1 - E_samples[ cos(x, y) ]     (x, y flattened per sample)

a block whose output points where its input did adds least. BI is measured on real samples
(the train split) when the conversion has data. With a latency target the blocks buy time, so they
rank as the channel allocation's NetAdapt steps do, by influence lost per microsecond saved:
BI / T_b, T_b the per-layer latency table's time of the block's layers at full width
(edgehad.prune.allocate.block_latency). Removing blocks changes the function: recover
with fine-tuning (distillation from the original), as after channel pruning.

A block is any submodule whose forward returns ``x + f(x)`` (or ``f(x) + x``) of its one input,
found by tracing the submodule with torch.fx (MobileNetV2/EfficientNet inverted residuals,
pre-activation blocks); a block whose sum is followed by anything (ResNet's ReLU after the add)
is not one, since removing it would drop that too. Blocks inside a removed block go with it.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
from torch import nn

_ADDS = (operator.add, operator.iadd, torch.add)


@dataclass
class BlockDrop:
    model: nn.Module
    candidates: int = 0
    removed: list[str] = field(default_factory=list)
    influence: dict[str, float] = field(default_factory=dict)   # every candidate's BI
    cost_us: dict[str, float] = field(default_factory=dict)     # latency target: each candidate's table time

    def as_dict(self) -> dict:
        return {"candidates": self.candidates, "removed": self.removed,
                "influence": {k: round(v, 6) for k, v in self.influence.items()},
                **({"ranked_by": "influence per table microsecond",
                    "table_us": {k: round(v, 1) for k, v in self.cost_us.items()}} if self.cost_us else
                   {"ranked_by": "influence"})}


def is_residual(module: nn.Module) -> bool:
    """True when ``module.forward(x)`` returns ``x + f(x)`` for its single input x (torch.fx trace)."""
    import torch.fx

    if not any(True for _ in module.children()):
        return False  # a leaf layer: no branch to skip
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # data-dependent control flow, several outputs, ...: not a block we can prove
        return False
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    out = next(n for n in graph.nodes if n.op == "output").args[0]
    if len(inputs) != 1 or not isinstance(out, torch.fx.Node):
        return False
    is_add = (out.op == "call_function" and out.target in _ADDS) or (out.op == "call_method" and out.target == "add")
    return is_add and len(out.args) == 2 and sum(a is inputs[0] for a in out.args) == 1


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if name and is_residual(m)]


def block_influence(model: nn.Module, blocks: list[tuple[str, nn.Module]], inputs: tuple) -> dict[str, float]:
    """BI of each block on ``inputs`` (samples along dim 0, run in batches): 1 - the mean per-sample cosine of
    its input and output."""
    sums: dict[str, list] = {name: [] for name, _ in blocks}

    def hook(mod, args, out, name):
        if not args or not isinstance(out, torch.Tensor):
            return  # called by keyword: no influence measured, so never a candidate
        x, y = args[0].flatten(1).float(), out.flatten(1).float()
        if x.shape == y.shape:
            sums[name].append(torch.nn.functional.cosine_similarity(x, y, dim=1))

    from edgehad.rewrite import STATS_BATCH

    handles = [m.register_forward_hook(lambda mod, a, o, name=name: hook(mod, a, o, name)) for name, m in blocks]
    try:
        with torch.no_grad():
            model.eval()
            # in batches, as the rewrite rules' statistics: 256 samples at 224x224 would hold GBs of activations
            for i in range(0, len(inputs[0]), STATS_BATCH):
                model(*(t[i:i + STATS_BATCH] for t in inputs))
    finally:
        for h in handles:
            h.remove()
    return {name: 1.0 - float(torch.cat(c).mean()) for name, c in sums.items() if c}


def drop_blocks(model: nn.Module, fraction: float, inputs: tuple, cost=None) -> BlockDrop:
    """A copy of ``model`` without round(fraction x candidates) residual blocks, lowest BI first.

    ``cost``: a function from the candidates' names to {name: microseconds} (a latency target): lowest
    BI per microsecond first, a block with no time measured last.
    """
    from edgehad.rewrite import replace_module

    work = copy.deepcopy(model).eval()
    blocks = residual_blocks(work)
    influence = block_influence(work, blocks, inputs)
    cost_us = cost(list(influence)) if cost is not None and influence else {}
    rank = (lambda n: influence[n] / cost_us[n] if cost_us.get(n, 0) > 0 else float("inf")) if cost_us \
        else influence.get
    ranked = sorted(influence, key=rank)
    want = int(fraction * len(influence) + 0.5)
    removed: list[str] = []
    for name in ranked:
        if len(removed) == want:
            break
        # a block inside (or around) one already removed is not a second choice: it went with it, or
        # removing it would take more than was counted
        if any(name.startswith(r + ".") or r.startswith(name + ".") for r in removed):
            continue
        removed.append(name)
    for name in removed:
        replace_module(work, name, nn.Identity())
    return BlockDrop(work, candidates=len(influence), removed=removed, influence=influence, cost_us=cost_us)
