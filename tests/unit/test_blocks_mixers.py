"""Attention-free token mixers (AFT, gMLP): outputs against their formulas written out by hand, and costs."""

import pytest
import torch

from edgehad.blocks import (
    AFTConv,
    AFTSimple,
    GMLPBlock,
    SpatialGatingUnit,
    aft_conv_cost,
    aft_simple_cost,
    gmlp_block_cost,
    spatial_gating_cost,
)
from edgehad.blocks.catalogue import catalogue
from edgehad.core.errors import UserInputError
from edgehad.cost import count_macs, count_params
from tests.unit.test_blocks import randomize


def _randomize(module: torch.nn.Module, std: float = 0.5) -> torch.nn.Module:
    return randomize(module, std)  # smaller weights: sigmoid gates and exp stay in their working range


def _linear(x, layer):
    return x @ layer.weight.T + layer.bias


def _linear64(x, layer):
    return x @ layer.weight.double().T + layer.bias.double()


def _aft_reference(module, x, pos=None):
    """Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + w[t, t']) V_t' / Σ_t' exp(K_t' + w[t, t']), then proj.

    ``pos`` [C, T, T] holds w per channel (None: all zero, AFT-simple). In
    float64 with softmax over t' (stable for any K), independent of the
    module's max-subtraction, global sum and convolution.
    """
    x = x.double()
    with torch.no_grad():
        q, k, v = (_linear64(x, getattr(module, n)) for n in ("q", "k", "v"))
        b, t, c = x.shape
        pos = torch.zeros(c, t, t, dtype=x.dtype) if pos is None else pos.double()
        logits = k.permute(0, 2, 1)[:, :, None, :] + pos[None]  # [B, C, t, t']
        weights = torch.softmax(logits, dim=-1)
        y = torch.sigmoid(q) * torch.einsum("bcts,bsc->btc", weights, v)
        return _linear64(y, module.proj)


def _local_biases(pos_bias: torch.Tensor, dim: int, seq_len: int) -> torch.Tensor:
    """w[c, t, t'] = pos_bias[c % heads, t' - t + r] inside the window, 0 outside; [dim, T, T]."""
    heads, window = pos_bias.shape
    r = window // 2
    w = torch.zeros(dim, seq_len, seq_len)
    for c in range(dim):
        for t in range(seq_len):
            for s in range(seq_len):
                if abs(s - t) <= r:
                    w[c, t, s] = pos_bias[c % heads, s - t + r]
    return w


# --- AFT-simple -------------------------------------------------------------------


def test_aft_simple_matches_formula():
    aft = _randomize(AFTSimple(6))
    x = torch.randn(2, 5, 6)
    wq, wk, wv, wo = aft.q.weight, aft.k.weight, aft.v.weight, aft.proj.weight
    with torch.no_grad():
        q, k, v = x @ wq.T + aft.q.bias, x @ wk.T + aft.k.bias, x @ wv.T + aft.v.bias
        expected = torch.zeros(2, 5, 6)
        for b in range(2):
            for t in range(5):
                for c in range(6):
                    ek = torch.exp(k[b, :, c])  # over t'
                    context = (ek / ek.sum() * v[b, :, c]).sum()
                    expected[b, t, c] = torch.sigmoid(q[b, t, c]) * context
        expected = expected @ wo.T + aft.proj.bias
        torch.testing.assert_close(aft(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(aft(x), _aft_reference(aft, x).float(), rtol=1e-5, atol=1e-5)


def test_aft_simple_layout_and_attributes():
    aft = AFTSimple(8, bias=False)
    for name in ("q", "k", "v", "proj"):
        layer = getattr(aft, name)
        assert type(layer) is torch.nn.Linear and (layer.in_features, layer.out_features) == (8, 8)
        assert layer.bias is None
    assert aft.broadcast_dims == (1,) and aft.coupled_dims == (-1,)  # context [B, 1, dim] over T
    assert sorted(n for n, _ in aft.named_parameters()) == ["k.weight", "proj.weight", "q.weight", "v.weight"]


def test_aft_simple_equal_keys_give_gated_mean_of_values():
    aft = _randomize(AFTSimple(4))
    with torch.no_grad():
        aft.k.weight.zero_()  # K = bias: the same for every position
        aft.proj.weight.copy_(torch.eye(4))
        aft.proj.bias.zero_()
        x = torch.randn(3, 7, 4)
        expected = torch.sigmoid(_linear(x, aft.q)) * _linear(x, aft.v).mean(1, keepdim=True)
        torch.testing.assert_close(aft(x), expected, rtol=1e-5, atol=1e-6)


def test_aft_simple_is_permutation_invariant_in_its_context():
    # the pooled context ignores order: permuting the tokens permutes the output the same way
    aft = _randomize(AFTSimple(4))
    x = torch.randn(1, 6, 4)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        torch.testing.assert_close(aft(x[:, perm]), aft(x)[:, perm], rtol=1e-5, atol=1e-6)


# --- AFT-conv ---------------------------------------------------------------------


@pytest.mark.parametrize("heads, window, seq_len", [(1, 3, 6), (2, 5, 6), (6, 3, 5), (3, 9, 4)])
def test_aft_conv_matches_formula(heads, window, seq_len):
    aft = _randomize(AFTConv(6, window, heads=heads))  # window 9 > 2·4 - 1: reaches past both ends
    x = torch.randn(2, seq_len, 6)
    w = _local_biases(aft.pos_bias.detach(), 6, seq_len)
    with torch.no_grad():
        q, k, v = _linear(x, aft.q), _linear(x, aft.k), _linear(x, aft.v)
        expected = torch.zeros(2, seq_len, 6)
        for t in range(seq_len):
            a = torch.exp(k + w[:, t, :].T[None])  # [B, t', C]: exp(K_t' + w_{t,t'})
            expected[:, t] = torch.sigmoid(q[:, t]) * (a * v).sum(1) / a.sum(1)
        expected = _linear(expected, aft.proj)
        torch.testing.assert_close(aft(x), expected, rtol=1e-5, atol=1e-5)
    assert aft.broadcast_dims == () and aft.pos_bias.shape == (heads, window)


def test_aft_conv_with_zero_biases_is_aft_simple():
    simple = _randomize(AFTSimple(8))
    conv = AFTConv(8, 5, heads=2).eval()
    assert torch.count_nonzero(conv.pos_bias) == 0  # the initial state
    conv.load_state_dict({**simple.state_dict(), "pos_bias": conv.pos_bias.detach()})
    x = torch.randn(2, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), simple(x), rtol=1e-5, atol=1e-6)


def test_aft_conv_large_own_bias_selects_own_value():
    # window 1 with w_0 = 30: exp(K_t + 30) swamps every other key, so Y_t -> σ(Q_t) ⊙ V_t
    aft = _randomize(AFTConv(4, 1), std=0.3)
    with torch.no_grad():
        aft.pos_bias.fill_(30.0)
        aft.proj.weight.copy_(torch.eye(4))
        aft.proj.bias.zero_()
        x = torch.randn(2, 6, 4)
        expected = torch.sigmoid(_linear(x, aft.q)) * _linear(x, aft.v)
        torch.testing.assert_close(aft(x), expected, rtol=1e-4, atol=1e-5)


def test_aft_conv_large_window_biases_make_it_local():
    # biases of +25 inside the window: a value outside it barely reaches Y_t, one inside does
    aft = _randomize(AFTConv(4, 3), std=0.3)
    with torch.no_grad():
        aft.pos_bias.fill_(25.0)
        x = torch.randn(1, 8, 4)
        y = aft(x)
        far, near = x.clone(), x.clone()
        far[:, 6] += 3.0  # |6 - 1| > r = 1
        near[:, 2] += 3.0  # |2 - 1| <= 1
        assert (aft(far)[:, 1] - y[:, 1]).abs().max() < 1e-5
        assert (aft(near)[:, 1] - y[:, 1]).abs().max() > 1e-2


# --- numerics ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: AFTSimple(8), lambda: AFTConv(8, 3, heads=4)])
def test_aft_large_inputs_stay_finite_and_exact(make):
    aft = _randomize(make(), std=2.0)
    x = torch.randn(2, 10, 8) * 10
    with torch.no_grad():
        assert torch.isinf(torch.exp(_linear(x, aft.k))).any()  # a naive exp(K) overflows here
        y = aft(x)
    pos = _local_biases(aft.pos_bias.detach(), 8, 10) if isinstance(aft, AFTConv) else None
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), _aft_reference(aft, x, pos), rtol=1e-4, atol=1e-4)


def test_aft_gradients_match_softmax_reference():
    # the max subtracted before exp is detached; the gradient is still the softmax's
    aft = _randomize(AFTConv(4, 3, heads=2))
    x = torch.randn(1, 5, 4, requires_grad=True)
    aft(x).square().sum().backward()
    pos = _local_biases(aft.pos_bias.detach(), 4, 5)
    x2 = x.detach().clone().requires_grad_(True)
    q, k, v = _linear(x2, aft.q), _linear(x2, aft.k), _linear(x2, aft.v)
    weights = torch.softmax(k.permute(0, 2, 1)[:, :, None, :] + pos[None], dim=-1)
    ref = _linear(torch.sigmoid(q) * torch.einsum("bcts,bsc->btc", weights, v), aft.proj)
    ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-4, atol=1e-5)


# --- AFT costs --------------------------------------------------------------------


def test_aft_costs():
    # dim 2, T 3: params 4·4 + 4·2 = 24; MACs 3·16 = 48; E ⊙ V and σ(Q) ⊙ context: 2·3·2 = 12
    assert aft_simple_cost(2, 3) == {"params": 24, "macs": 48, "hadamard_mults": 12}
    assert aft_simple_cost(2, 3, bias=False)["params"] == 16
    # AFT-conv window 3, 2 heads: + 6 biases; + 2·3·2·3 = 36 conv MACs
    assert aft_conv_cost(2, 3, 3, heads=2) == {"params": 30, "macs": 84, "hadamard_mults": 12}
    for aft, t in ((AFTSimple(16), 12), (AFTSimple(8, bias=False), 5), (AFTConv(16, 5, heads=4), 12),
                   (AFTConv(8, 3, heads=8, bias=False), 7)):
        cost = aft.cost(t)
        assert cost["params"] == count_params(aft)
        assert cost["macs"] == count_macs(aft, torch.randn(1, t, aft.dim))


# --- gMLP spatial gating ----------------------------------------------------------


def _layer_norm(z, norm):
    mean = z.mean(-1, keepdim=True)
    var = ((z - mean) ** 2).mean(-1, keepdim=True)
    return (z - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def test_spatial_gating_matches_formula():
    sgu = _randomize(SpatialGatingUnit(6, 5))
    z = torch.randn(2, 5, 6)
    with torch.no_grad():
        z1, z2 = z[..., :3], z[..., 3:]
        n = _layer_norm(z2, sgu.norm)
        expected = torch.zeros(2, 5, 3)
        for t in range(5):
            mixed = sum(sgu.spatial[t, s] * n[:, s] for s in range(5)) + sgu.spatial_bias[t]
            expected[:, t] = z1[:, t] * mixed
        torch.testing.assert_close(sgu(z), expected, rtol=1e-5, atol=1e-5)
    assert sgu.spatial.shape == (5, 5) and sgu.spatial_bias.shape == (5,)
    assert sgu.broadcast_dims == () and sgu.coupled_dims == (-1,)


def test_spatial_gating_starts_as_identity_gate():
    # the paper's init: W near zero, b = 1, so s(Z) ≈ Z1
    sgu = SpatialGatingUnit(8, 16).eval()
    assert sgu.spatial.abs().max() <= 1e-3 / 16 and sgu.spatial.abs().max() > 0
    assert torch.equal(sgu.spatial_bias, torch.ones(16))
    z = torch.randn(2, 16, 8)
    with torch.no_grad():
        torch.testing.assert_close(sgu(z), z[..., :4], rtol=0, atol=1e-2 * z.abs().max().item())


def test_spatial_gating_mixes_along_the_sequence():
    # W = shift by one position, b = 0: s(Z)_t = Z1_t ⊙ LN(Z2)_{t-1}, and 0 at t = 0
    sgu = SpatialGatingUnit(4, 6).eval()
    with torch.no_grad():
        sgu.spatial.copy_(torch.diag(torch.ones(5), -1))
        sgu.spatial_bias.zero_()
        z = torch.randn(1, 6, 4)
        n = _layer_norm(z[..., 2:], sgu.norm)
        expected = z[..., :2] * torch.cat([torch.zeros(1, 1, 2), n[:, :-1]], 1)
        torch.testing.assert_close(sgu(z), expected, rtol=1e-5, atol=1e-6)


def test_gmlp_block_matches_formula():
    block = _randomize(GMLPBlock(4, 6, 5))
    x = torch.randn(2, 5, 4)
    with torch.no_grad():
        h = _linear(_layer_norm(x, block.norm), block.proj_in)
        h = 0.5 * h * (1 + torch.erf(h / 2**0.5))  # GELU
        h1, h2 = h[..., :3], h[..., 3:]
        s = h1 * (torch.einsum("ts,bsc->btc", block.sgu.spatial, _layer_norm(h2, block.sgu.norm))
                  + block.sgu.spatial_bias[:, None])
        expected = x + _linear(s, block.proj_out)
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)
        assert torch.isfinite(block(x * 10)).all()


def test_gmlp_costs():
    # dim 4, T 3: LN 4 + W 9 + b 3 = 16; MACs 9·2 = 18; Z1 ⊙ f(Z2): 3·2 = 6
    assert spatial_gating_cost(4, 3) == {"params": 16, "macs": 18, "hadamard_mults": 6}
    # block dim 2, hidden 4, T 3: LN 4 + proj_in 8+4 + SGU 16 + proj_out 4+2 = 38
    # MACs 3·2·4 + 18 + 3·2·2 = 54; GELU 3·4 + gate 6 = 18
    assert gmlp_block_cost(2, 4, 3) == {"params": 38, "macs": 54, "hadamard_mults": 18}
    for module in (SpatialGatingUnit(16, 12), GMLPBlock(8, 24, 10)):
        x = torch.randn(1, module.seq_len, module.dim)
        cost = module.cost()
        assert cost == module.cost(module.seq_len)
        assert cost["params"] == count_params(module)
        assert cost["macs"] == count_macs(module, x)
    assert GMLPBlock(8, 24, 10).cost()["hadamard_mults"] == 10 * 24 + 10 * 12


# --- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: AFTSimple(0), "dim must be a positive integer"),
        (lambda: AFTConv(8, 4), "window must be odd"),
        (lambda: AFTConv(8, 0), "window must be a positive integer"),
        (lambda: AFTConv(8, 3, heads=3), r"dim \(8\) must be divisible by heads \(3\)"),
        (lambda: AFTConv(8, 3, heads=0), "heads must be a positive integer"),
        (lambda: SpatialGatingUnit(7, 4), "dim must be even"),
        (lambda: SpatialGatingUnit(8, 0), "seq_len must be a positive integer"),
        (lambda: GMLPBlock(8, 5, 4), "hidden must be even"),
        (lambda: aft_simple_cost(8, 0), "seq_len must be a positive integer"),
        (lambda: aft_conv_cost(8, 3, 4, heads=-1), "heads must be a positive integer"),
        (lambda: spatial_gating_cost(3, 4), "dim must be even"),
        (lambda: SpatialGatingUnit(8, 4).cost(5), "built for seq_len 4; got 5"),
        (lambda: GMLPBlock(8, 16, 4).cost(6), "built for seq_len 4; got 6"),
    ],
)
def test_bad_arguments_raise_user_input_error(build, match):
    with pytest.raises(UserInputError, match=match):
        build()


@pytest.mark.parametrize("module, shape", [
    (AFTSimple(8), (1, 5, 6)), (AFTConv(8, 3), (5, 8)), (SpatialGatingUnit(8, 4), (1, 5, 8)),
    (GMLPBlock(8, 16, 4), (2, 3, 8)),
])
def test_wrong_input_shape_raises_user_input_error(module, shape):
    with pytest.raises(UserInputError, match="expects input"):
        module(torch.randn(*shape))


def test_mixers_are_catalogued():
    entries = catalogue()
    for name in ("aft-simple", "aft-conv", "gmlp-spatial-gating", "gmlp-block"):
        assert entries[name].domain == "efficient operators"
        module, (x,) = entries[name].example()
        assert x.shape == (1, 16, 32) and module(x).shape[:2] == (1, 16)
