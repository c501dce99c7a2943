"""Graph rewrites done before int8 annotation: they must not change the function."""

from __future__ import annotations

import torch
from torch import nn

from edgehad.quantize.pt2e import decompose_silu, fold_gate_affine


class Gated(nn.Module):
    """conv -> hardsigmoid gate (with and without bias), a silu, and a gate whose conv is shared."""

    def __init__(self):
        super().__init__()
        self.body = nn.Conv2d(4, 8, 3, padding=1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.gate_nobias = nn.Conv2d(8, 8, 1, bias=False)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = nn.functional.silu(self.body(x))
        y = y * nn.functional.hardsigmoid(self.gate(y)) * nn.functional.hardsigmoid(self.gate_nobias(y))
        return self.head(y.mean((2, 3)))


def _graph(model, x):
    return torch.export.export(model, (x,), strict=True).module()


def _targets(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def test_gate_folding_and_silu_split_keep_the_function_and_the_users_weights():
    torch.manual_seed(0)
    model = Gated().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 4, 6, 6) * 4  # wide enough to hit both ends of the hard-sigmoid
    gm = _graph(model, x)
    assert fold_gate_affine(gm) == 2
    assert decompose_silu(gm) == 1
    targets = _targets(gm)
    assert not any("hardsigmoid" in t or "silu" in t for t in targets)
    assert targets.count("aten.hardtanh.default") == 2 and "aten.sigmoid.default" in targets
    torch.testing.assert_close(gm(x), model(x), atol=1e-5, rtol=1e-5)
    for k, v in model.state_dict().items():  # folding writes new tensors, never the user's
        assert torch.equal(v, before[k]), k


def test_a_gate_on_a_shared_layer_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return nn.functional.hardsigmoid(self.fc(x)) + self.fc(x)

    model = Shared().eval()
    gm = _graph(model, torch.randn(1, 4))
    assert fold_gate_affine(gm) == 0
    assert "aten.hardsigmoid.default" in _targets(gm)
