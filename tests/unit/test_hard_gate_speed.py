"""act-to-hard-gate's hard-swish in int8 TFLite: ops LiteRT's XNNPACK delegate runs, no HARD_SWISH.

XNNPACK takes HARD_SWISH in float only: an int8 HARD_SWISH stays in TFLite's own kernel and cuts the delegated
graph in two around it (efficientnet_b0 int8: 49 of them, 50 partitions, 2.7x the SiLU model's latency; the
numbers are in edgehad/rewrite/act_to_hard_gate.py). The speed is a benchmark's to measure; what is checked
here is its cause, read from the interpreter after LiteRT applied its default delegate: each DELEGATE node is
one partition XNNPACK runs, and an op left beside them runs outside it.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

import edgehad
from edgehad.blocks.activations import HardSwish
from edgehad.rewrite.act_to_hard_gate import HardSwishGate


def _int8_ops(model: nn.Module, out, rewrite=None) -> Counter:
    """Op counts of ``model`` converted to int8 TFLite, DELEGATE nodes included (XNNPACK applied)."""
    from ai_edge_litert.interpreter import Interpreter

    x = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    edgehad.convert(model, (x,), formats="tflite", quantize="int8", calib="random", rewrite=rewrite,
                    finetune_epochs=0 if rewrite else None, out=out)
    interpreter = Interpreter(model_path=str(out / "model.tflite"), num_threads=1)
    interpreter.allocate_tensors()
    return Counter(op["op_name"] for op in interpreter._get_ops_details())


def _conv_act_conv(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 8, 1), act, nn.Conv2d(8, 8, 1)).eval()


def test_the_rules_hard_swish_runs_inside_xnnpack_in_int8(tmp_path):
    ops = _int8_ops(_conv_act_conv(nn.SiLU()), tmp_path / "gate", rewrite="act-to-hard-gate")
    assert "HARD_SWISH" not in ops and "LOGISTIC" not in ops   # the rule ran: no sigmoid left, no HARD_SWISH op
    assert ops["CONV_2D"] == 2 and ops["DELEGATE"] == 1        # the whole graph is one XNNPACK partition

    # torch's hardswish, the form the rule wrote before: an int8 HARD_SWISH, which XNNPACK leaves out
    ops = _int8_ops(_conv_act_conv(HardSwish()), tmp_path / "hardswish")
    assert ops["HARD_SWISH"] == 1 and ops["DELEGATE"] == 2


def test_the_gate_is_hard_swish():
    """x * hardsigmoid(x) is hardswish(x) (torch computes both as x * relu6(x + 3) / 6), up to float rounding."""
    x = torch.linspace(-8, 8, 160_001)
    gate, hard = HardSwishGate()(x), HardSwish()(x)
    assert float((gate - hard).abs().max()) <= 1e-6 * max(1.0, float(hard.abs().max()))
    assert torch.equal(gate[x <= -3], torch.zeros_like(gate[x <= -3])) and torch.equal(gate[x >= 3], x[x >= 3])
    assert isinstance(HardSwishGate(), HardSwish)   # still a HardSwish for insert-se and every isinstance
