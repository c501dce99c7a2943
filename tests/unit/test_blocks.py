"""Hadamard blocks: outputs against their formulas written out by hand, and their costs."""

import pytest
import torch
import torch.nn.functional as F

from edgehad.blocks import (
    GLUFeedForward,
    HardSigmoid,
    HardSwish,
    SiLU,
    SqueezeExcite,
    activation_cost,
    glu_cost,
    glu_hidden_for_mlp,
    make_activation,
    squeeze_excite_cost,
)
from edgehad.core.errors import UserInputError
from edgehad.cost import count_macs, count_params


def randomize(module: torch.nn.Module, std: float = 1.0) -> torch.nn.Module:
    """Seeded N(0, std) parameters, eval mode: a block's formula is checked on non-trivial weights."""
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=std)
    return module.eval()


@pytest.mark.parametrize("gate", ["sigmoid", "hardsigmoid"])
def test_squeeze_excite_matches_formula(gate):
    se = randomize(SqueezeExcite(6, reduction=3, gate=gate))
    x = torch.randn(2, 6, 5, 4)
    w1, b1 = se.reduce.weight[:, :, 0, 0], se.reduce.bias  # [2, 6], [2]
    w2, b2 = se.expand.weight[:, :, 0, 0], se.expand.bias  # [6, 2], [6]
    s = x.sum((2, 3)) / 20  # squeeze: mean over H, W
    z = torch.clamp(s @ w1.T + b1, min=0)  # ReLU
    a = z @ w2.T + b2
    g = 1 / (1 + torch.exp(-a)) if gate == "sigmoid" else torch.clamp(a / 6 + 0.5, 0, 1)
    expected = x * g[:, :, None, None]
    with torch.no_grad():
        torch.testing.assert_close(se(x), expected, rtol=1e-5, atol=1e-6)
    assert se.squeeze_channels == 2


def test_squeeze_excite_broadcast_record_matches_its_forward():
    """What pruning reads (broadcast_dims, coupled_dims) is what forward does, observed on the real gate."""
    se = randomize(SqueezeExcite(8, squeeze_channels=3))
    x = torch.randn(2, 8, 5, 4)
    seen = []
    se.gate.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        y = se(x)
    (g,) = seen
    broadcast = tuple(d for d in range(x.dim()) if g.shape[d] == 1 and x.shape[d] > 1)
    coupled = tuple(d for d in range(1, x.dim()) if g.shape[d] == x.shape[d] > 1)
    assert (broadcast, coupled) == (se.broadcast_dims, se.coupled_dims)
    torch.testing.assert_close(y, x * g)
    # coupled: closing channel 3 of the gate (expand's bias -> -inf) zeroes channel 3 of y and nothing else
    with torch.no_grad():
        se.expand.bias[3] = -float("inf")
        y2 = se(x)
    assert torch.all(y2[:, 3] == 0) and torch.equal(y2[:, [0, 1, 2, 4, 5, 6, 7]], y[:, [0, 1, 2, 4, 5, 6, 7]])


def test_squeeze_excite_cost():
    # C=4, S=2 on 3x3: params 4*2+2 + 2*4+4 = 22; MACs 8 + 8; x ⊙ g: 4*9 = 36
    cost = squeeze_excite_cost(4, 2, 3, 3)
    assert cost == {"params": 22, "macs": 16, "hadamard_mults": 36}
    se = SqueezeExcite(4, squeeze_channels=2)
    assert se.cost(3, 3) == cost
    assert count_params(se) == 22
    assert count_macs(se, torch.randn(1, 4, 3, 3)) == 16  # the repo-wide counter agrees


def test_squeeze_excite_rejects_unknown_gate():
    with pytest.raises(UserInputError, match="unknown SE gate 'tanh'; expected one of"):
        SqueezeExcite(8, gate="tanh")


@pytest.mark.parametrize(
    "variant, act",
    [
        ("glu", torch.sigmoid),
        ("reglu", torch.relu),
        ("geglu", lambda z: 0.5 * z * (1 + torch.erf(z / 2**0.5))),
        ("swiglu", lambda z: z * torch.sigmoid(z)),
    ],
)
def test_glu_matches_formula(variant, act):
    ff = randomize(GLUFeedForward(4, 6, variant, out_dim=3))
    x = torch.randn(2, 5, 4)
    w, v, w2 = ff.w.weight, ff.v.weight, ff.w2.weight  # [6, 4], [6, 4], [3, 6]
    expected = (act(x @ w.T) * (x @ v.T)) @ w2.T
    with torch.no_grad():
        torch.testing.assert_close(ff(x), expected, rtol=1e-5, atol=1e-5)
    assert ff.broadcast_dims == () and ff.coupled_dims == (-1,)


def test_glu_channels_form_is_the_linear_form_per_pixel():
    lin = randomize(GLUFeedForward(4, 6, "swiglu", bias=True))
    conv = GLUFeedForward(4, 6, "swiglu", bias=True, form="channels").eval()
    with torch.no_grad():
        for name in ("w", "v", "w2"):
            getattr(conv, name).weight.copy_(getattr(lin, name).weight[:, :, None, None])
            getattr(conv, name).bias.copy_(getattr(lin, name).bias)
        x = torch.randn(2, 4, 3, 5)
        expected = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
    assert conv.coupled_dims == (1,)


def test_glu_cost():
    # dim 2, hidden 3, out 2: params 2*2*3 + 3*2 = 18; per token MACs 18, gate product 3
    assert glu_cost(2, 3) == {"params": 18, "macs": 18, "hadamard_mults": 3}
    # swiglu: SiLU's own z*σ(z) adds 3 more products; 5 tokens; biases 3+3+2
    assert glu_cost(2, 3, "swiglu", bias=True, tokens=5) == {"params": 26, "macs": 90, "hadamard_mults": 30}
    ff = GLUFeedForward(8, 12, "geglu", out_dim=5, bias=True)
    x = torch.randn(1, 7, 8)
    assert ff.cost(tokens=7)["params"] == count_params(ff) == 2 * 8 * 12 + 12 * 5 + 2 * 12 + 5
    assert ff.cost(tokens=7)["macs"] == count_macs(ff, x) == 7 * (2 * 8 * 12 + 12 * 5)


def test_glu_hidden_for_equal_params():
    assert glu_hidden_for_mlp(3072) == 2048  # the paper's d_ff
    assert glu_hidden_for_mlp(6) == 4
    dim, h = 512, 3072
    mlp_params = 2 * dim * h  # dim -> h -> dim, no bias
    assert glu_cost(dim, glu_hidden_for_mlp(h))["params"] == mlp_params
    assert glu_hidden_for_mlp(1000) == 667
    assert glu_hidden_for_mlp(1000, multiple_of=64) == 704  # 667 rounded up to 11 * 64
    with pytest.raises(UserInputError, match="positive"):
        glu_hidden_for_mlp(0)


def test_glu_rejects_unknown_variant_and_form():
    with pytest.raises(UserInputError, match="unknown GLU variant 'xglu'"):
        GLUFeedForward(4, 4, "xglu")
    with pytest.raises(UserInputError, match="unknown GLU form 'pixels'"):
        GLUFeedForward(4, 4, form="pixels")


def test_activations_match_formulas():
    x = torch.linspace(-5, 5, 101)
    relu6 = torch.clamp(x + 3, 0, 6)
    torch.testing.assert_close(HardSigmoid()(x), relu6 / 6)
    torch.testing.assert_close(HardSwish()(x), x * relu6 / 6)
    torch.testing.assert_close(SiLU()(x), x / (1 + torch.exp(-x)))
    assert HardSigmoid()(torch.tensor([-3.0, 0.0, 3.0])).tolist() == [0.0, 0.5, 1.0]
    assert isinstance(make_activation("hardswish"), HardSwish)
    assert torch.equal(make_activation("relu6")(x), F.relu6(x))


def test_activation_cost_and_errors():
    assert activation_cost((2, 3, 4, 4), "hardswish") == {"params": 0, "macs": 0, "hadamard_mults": 96}
    assert activation_cost((2, 3, 4, 4), "hardsigmoid")["hadamard_mults"] == 0
    with pytest.raises(UserInputError, match="unknown activation 'mish'"):
        make_activation("mish")
    with pytest.raises(UserInputError, match="unknown activation 'mish'"):
        activation_cost((2,), "mish")
