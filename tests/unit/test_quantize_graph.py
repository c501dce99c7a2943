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


class MaskedBlock(nn.Module):
    """A post-norm encoder block as transformers writes it: summed embeddings, additive mask where(mask, 0, finfo.min),
    scores -> softmax, residual sums into LayerNorms. Inputs: token ids and an attention mask, int64."""

    def __init__(self, dim=8):
        super().__init__()
        self.emb, self.kind, self.ln0 = nn.Embedding(20, dim), nn.Embedding(2, dim), nn.LayerNorm(dim)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out, self.ln1 = nn.Linear(dim, dim), nn.LayerNorm(dim)
        self.up, self.down, self.ln2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim), nn.LayerNorm(dim)

    def forward(self, ids, mask):
        x = self.ln0(self.emb(ids) + self.kind(mask))
        bias = torch.where(mask[:, None, :].bool(), 0.0, torch.finfo(torch.float32).min)
        scores = self.q(x) @ self.k(x).transpose(1, 2) * 0.25 + bias
        x = self.ln1(x + self.out(torch.softmax(scores, -1) @ self.v(x)))
        return self.ln2(x + self.down(nn.functional.gelu(self.up(x))))


def test_transformer_activations_int8_cannot_hold_stay_float_and_the_matmuls_stay_int8():
    from edgehad.quantize import quantizer as q
    from edgehad.quantize.pt2e import float_activations, quantize_int8

    torch.manual_seed(0)
    model = MaskedBlock().eval()
    ids, mask = torch.randint(0, 20, (1, 6)), torch.tensor([[1, 1, 1, 1, 0, 0]])
    calib = [(torch.randint(0, 20, (1, 6)), torch.tensor([[1] * (6 - i) + [0] * i])) for i in range(4)]
    quantized, _ = quantize_int8(model, (ids, mask), calib)
    found = {e["reason"]: e for e in float_activations(quantized)}
    assert set(found) == {q.MASK, q.LOOKUP, q.RESIDUAL, q.SCORES}
    assert found[q.LOOKUP]["modules"] == ["emb", "kind"]
    assert found[q.RESIDUAL]["count"] == 5 and {"out", "down"} <= set(found[q.RESIDUAL]["modules"])
    assert found[q.SCORES]["count"] == 3  # the Q K^T matmul, its scale, the mask add
    # no observer saw the mask's sentinel: every scale is a sane one
    scales = [float(n.args[1]) for n in quantized.graph.nodes if "quantize_per_tensor" in str(n.target)]
    assert scales and max(scales) < 1.0
    # the weighted layers still take int8 inputs and weights
    layers = [n for n in quantized.graph.nodes if n.target == torch.ops.aten.linear.default]
    assert len(layers) == 6 and all("dequantize" in str(n.args[0].target) for n in layers)
    with torch.no_grad():
        want, got = model(ids, mask), quantized(ids, mask)
    assert float(nn.functional.cosine_similarity(want.flatten(), got.flatten(), dim=0)) >= 0.99


def test_a_cnn_has_no_float_activations():
    from edgehad.quantize.pt2e import float_activations, quantize_int8

    torch.manual_seed(0)
    x = torch.randn(1, 4, 6, 6)
    quantized, _ = quantize_int8(Gated().eval(), (x,), [(x,), (torch.randn_like(x),)])
    assert float_activations(quantized) == []


def test_layers_float_by_design_are_named_so_in_the_report_and_the_warning():
    from edgehad.quantize.float_weights import FileProbe
    from edgehad.quantize.quantizer import RESIDUAL

    said, found = [], {}
    probe = FileProbe(found, said.append, by_design={"down": RESIDUAL})
    layers = [{"layer": "down", "op": "FULLY_CONNECTED", "params": 100, "bytes": 400, "reason": "computes in float"},
              {"layer": "emb", "op": "GATHER", "params": 100, "bytes": 400, "reason": "a float table"}]
    probe._record("tflite", {"layers": layers, "params": 200, "bytes": 800, "share": 0.5})
    assert found["tflite"]["layers"][0]["reason"] == f"float by design: {RESIDUAL}"
    assert found["tflite"]["layers"][1]["reason"] == "a float table"
    assert said == ["warning: int8 tflite: 50% of the weight bytes stay float by design (2 FULLY_CONNECTED, GATHER: "
                    "embedding tables, and the layers feeding transformer residual sums, which this format cannot "
                    "give a float output from int8); see the report's quantization.float_activations and "
                    "float_weights"]
    said.clear()
    plain = [{**layers[0], "reason": "computes in float"}]
    FileProbe({}, said.append)._record("tflite", {"layers": plain, "params": 100, "bytes": 400, "share": 0.5})
    assert "the quantizer has no int8 pattern" in said[0]  # not by design: the old advice stands
