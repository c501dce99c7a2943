"""FiLM, low-rank bilinear pooling, Π-net CCP and partial convolution: formulas by hand, costs, errors."""

import re

import pytest
import torch
import torch.nn.functional as F

from edgehad.blocks import (
    FiLM,
    LowRankBilinearPooling,
    PartialConv2d,
    PolynomialCCP,
    film_cost,
    low_rank_bilinear_cost,
    partial_conv_cost,
    polynomial_ccp_cost,
)
from edgehad.core.errors import UserInputError
from edgehad.cost import count_macs, count_params
from tests.unit.test_blocks import randomize



# FiLM


def test_film_matches_formula():
    film = randomize(FiLM(4, 3))
    x, z = torch.randn(2, 4, 5, 6), torch.randn(2, 3)
    gamma = z @ film.gamma.weight.T + film.gamma.bias  # [2, 4]
    beta = z @ film.beta.weight.T + film.beta.bias
    expected = gamma[:, :, None, None] * x + beta[:, :, None, None]
    with torch.no_grad():
        torch.testing.assert_close(film(x, z), expected, rtol=1e-5, atol=1e-5)
    assert film.broadcast_dims == (2, 3) and film.coupled_dims == (1,)


def test_film_cost():
    # C=4, cond 3, on 5x6: params 2*(3*4 + 4) = 32; MACs 2*3*4 = 24; γ ⊙ x: 4*30 = 120
    cost = film_cost(4, 3, 5, 6)
    assert cost == {"params": 32, "macs": 24, "hadamard_mults": 120}
    film = FiLM(4, 3)
    assert film.cost(5, 6) == cost
    assert count_params(film) == 32
    assert count_macs(film, (torch.randn(1, 4, 5, 6), torch.randn(1, 3))) == 24


def test_film_rejects_mismatched_inputs():
    film = FiLM(4, 3)
    with pytest.raises(UserInputError, match=re.escape("FiLM expects z as [B, 3] with x's batch 2, got [2, 5]")):
        film(torch.randn(2, 4, 5, 5), torch.randn(2, 5))
    with pytest.raises(UserInputError, match=re.escape("FiLM expects x as [B, 4, H, W], got [2, 6, 5, 5]")):
        film(torch.randn(2, 6, 5, 5), torch.randn(2, 3))
    with pytest.raises(UserInputError, match="positive channels and cond_dim"):
        FiLM(0, 3)


# Low-rank bilinear pooling (MLB)


def test_low_rank_bilinear_matches_formula():
    mlb = randomize(LowRankBilinearPooling(5, 3, 4, 2))
    x, y = torch.randn(6, 5), torch.randn(6, 3)
    u, v, p, b = mlb.u.weight, mlb.v.weight, mlb.p.weight, mlb.p.bias  # [4, 5], [4, 3], [2, 4], [2]

    def tanh(a):
        return (torch.exp(2 * a) - 1) / (torch.exp(2 * a) + 1)

    expected = (tanh(x @ u.T) * tanh(y @ v.T)) @ p.T + b
    with torch.no_grad():
        torch.testing.assert_close(mlb(x, y), expected, rtol=1e-5, atol=1e-5)
    assert mlb.broadcast_dims == () and mlb.coupled_dims == (-1,)


def test_low_rank_bilinear_cost():
    # dx 5, dy 3, rank 4, out 2: params (5+3)*4 + 4*2 + 2 = 42; MACs 32 + 8 = 40; product 4
    assert low_rank_bilinear_cost(5, 3, 4, 2) == {"params": 42, "macs": 40, "hadamard_mults": 4}
    mlb = LowRankBilinearPooling(5, 3, 4, 2)
    assert mlb.cost(tokens=3) == low_rank_bilinear_cost(5, 3, 4, 2, tokens=3) == {
        "params": 42, "macs": 120, "hadamard_mults": 12}
    assert count_params(mlb) == 42
    assert count_macs(mlb, (torch.randn(3, 5), torch.randn(3, 3))) == 120


def test_low_rank_bilinear_rejects_mismatched_inputs():
    mlb = LowRankBilinearPooling(5, 3, 4, 2)
    with pytest.raises(UserInputError, match=re.escape("expects x [..., 5] and y [..., 3], got [2, 5] and [2, 4]")):
        mlb(torch.randn(2, 5), torch.randn(2, 4))
    with pytest.raises(UserInputError, match=re.escape("same leading dims, got [2, 5] and [3, 3]")):
        mlb(torch.randn(2, 5), torch.randn(3, 3))
    with pytest.raises(UserInputError, match="positive sizes"):
        LowRankBilinearPooling(5, 3, 0, 2)


# Π-net CCP polynomial


def test_polynomial_ccp_matches_formula():
    poly = randomize(PolynomialCCP(4, 6, degree=3, out_dim=2))
    z = torch.randn(5, 4)
    u1, u2, u3 = (u.weight for u in poly.u)  # [6, 4] each
    x1 = z @ u1.T
    x2 = (z @ u2.T) * x1 + x1
    x3 = (z @ u3.T) * x2 + x2
    expected = x3 @ poly.c.weight.T + poly.c.bias
    with torch.no_grad():
        torch.testing.assert_close(poly(z), expected, rtol=1e-4, atol=1e-4)
        # the recursion is x_1 ⊙ Π_{n=2..N} (1 + U_nᵀ z): degree N in z
        closed = x1 * (1 + z @ u2.T) * (1 + z @ u3.T)
        torch.testing.assert_close(x3, closed, rtol=1e-4, atol=1e-4)
        # degree 1 is a linear map
        lin = randomize(PolynomialCCP(4, 6, degree=1))
        torch.testing.assert_close(lin(z), z @ lin.u[0].weight.T @ lin.c.weight.T + lin.c.bias, rtol=1e-4, atol=1e-4)
    assert poly.broadcast_dims == () and poly.coupled_dims == (-1,)


def test_polynomial_ccp_channels_form_is_the_linear_form_per_pixel():
    lin = randomize(PolynomialCCP(4, 6, degree=2, out_dim=3))
    conv = PolynomialCCP(4, 6, degree=2, out_dim=3, form="channels").eval()
    with torch.no_grad():
        for src, dst in zip([*lin.u, lin.c], [*conv.u, conv.c]):
            dst.weight.copy_(src.weight[:, :, None, None])
        conv.c.bias.copy_(lin.c.bias)
        z = torch.randn(2, 4, 3, 5)
        expected = lin(z.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(conv(z), expected, rtol=1e-4, atol=1e-4)
    assert conv.coupled_dims == (1,)


def test_polynomial_ccp_cost():
    # d_in 4, k 6, N 3, out 2: params 3*4*6 + 6*2 + 2 = 86; per token MACs 72 + 12 = 84; products 2*6 = 12
    assert polynomial_ccp_cost(4, 6, 3, 2) == {"params": 86, "macs": 84, "hadamard_mults": 12}
    poly = PolynomialCCP(4, 6, degree=3, out_dim=2)
    assert poly.cost(tokens=5) == polynomial_ccp_cost(4, 6, 3, 2, tokens=5)
    assert count_params(poly) == 86
    assert count_macs(poly, (torch.randn(5, 4),)) == 5 * 84
    conv = PolynomialCCP(4, 6, degree=3, out_dim=2, form="channels")
    assert conv.cost(tokens=15) == {"params": 86, "macs": 15 * 84, "hadamard_mults": 15 * 12}
    assert count_params(conv) == 86
    assert count_macs(conv, (torch.randn(1, 4, 3, 5),)) == 15 * 84


def test_polynomial_ccp_rejects_bad_degree_form_and_input():
    with pytest.raises(UserInputError, match=re.escape("the polynomial degree must be an integer >= 1, got 0")):
        PolynomialCCP(4, 6, degree=0)
    with pytest.raises(UserInputError, match="unknown polynomial form 'pixels'"):
        PolynomialCCP(4, 6, form="pixels")
    with pytest.raises(UserInputError, match=re.escape("PolynomialCCP expects z as [..., 4], got [2, 5]")):
        PolynomialCCP(4, 6)(torch.randn(2, 5))
    with pytest.raises(UserInputError, match=re.escape("expects z as [B, 4, H, W], got [2, 4]")):
        PolynomialCCP(4, 6, form="channels")(torch.randn(2, 4))


# Partial convolution


def _partial_conv_by_hand(pc: PartialConv2d, x, m, padding, stride=1):
    """Per window: out = W·(x ⊙ m)·(sum 1)/(sum m) + b where sum m > 0, else 0; m' = [sum m > 0]."""
    c_out, c_in, kh, kw = pc.conv.weight.shape
    cols = F.unfold(x * m, (kh, kw), padding=padding, stride=stride)  # [B, C_in*K, L]
    msum = F.unfold(m, (kh, kw), padding=padding, stride=stride).sum(1, keepdim=True)  # [B, 1, L]
    raw = pc.conv.weight.reshape(c_out, -1) @ cols  # [B, C_out, L]
    window = m.shape[1] * kh * kw
    out = torch.where(msum > 0, raw * window / msum + pc.bias[:, None], torch.zeros(()))
    h = (x.shape[2] + 2 * padding - kh) // stride + 1
    w = (x.shape[3] + 2 * padding - kw) // stride + 1
    return out.reshape(x.shape[0], c_out, h, w), (msum > 0).float().reshape(x.shape[0], 1, h, w)


@pytest.mark.parametrize("mask_channels", [1, 3])
def test_partial_conv_matches_formula(mask_channels):
    pc = randomize(PartialConv2d(3, 5, 3, padding=1, mask_channels=mask_channels))
    torch.manual_seed(1)
    x = torch.randn(2, 3, 7, 8)
    m = (torch.rand(2, mask_channels, 7, 8) > 0.4).float()
    m[:, :, 1:6, 1:6] = 0  # a hole wide enough that some windows see no valid pixel
    expected, expected_mask = _partial_conv_by_hand(pc, x, m, padding=1)
    assert (expected_mask == 0).any() and (expected_mask == 1).any()
    with torch.no_grad():
        out, new_mask = pc(x, m)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(new_mask, expected_mask)  # exactly 0 or 1 for a 0/1 mask
    assert torch.equal(out[new_mask.expand_as(out) == 0], torch.zeros(int((new_mask == 0).sum()) * 5))
    assert pc.broadcast_dims == ((1,) if mask_channels == 1 else ())
    assert pc.coupled_dims == ((2, 3) if mask_channels == 1 else (1, 2, 3))


def test_partial_conv_strided_without_bias_and_with_a_full_mask():
    pc = randomize(PartialConv2d(3, 4, 3, stride=2, padding=1, bias=False))
    x = torch.randn(1, 3, 7, 9)
    with torch.no_grad():
        out, new_mask = pc(x, torch.ones(1, 1, 7, 9))
        # all pixels valid: interior windows are the plain conv; border windows are rescaled by 9 / (valid count)
        torch.testing.assert_close(out[:, :, 1:-1, 1:-1], pc.conv(x)[:, :, 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
        assert out.shape == (1, 4, 4, 5) and torch.equal(new_mask, torch.ones(1, 1, 4, 5))
        ones_sum = F.conv2d(torch.ones(1, 1, 7, 9), torch.ones(1, 1, 3, 3), stride=2, padding=1)
        torch.testing.assert_close(out, pc.conv(x) * 9 / ones_sum, rtol=1e-5, atol=1e-5)


def test_partial_conv_cost():
    # C_in 3, C_out 5, 3x3, stride 2, pad 1 on 7x9 -> 4x5 = 20 pixels
    # params 5*3*9 + 5 = 140; MACs 20*(5*27 + 1*9 + 5) = 2980; products 3*63 + 5*20 = 289
    cost = partial_conv_cost(3, 5, 3, 7, 9, stride=2, padding=1)
    assert cost == {"params": 140, "macs": 2980, "hadamard_mults": 289}
    pc = PartialConv2d(3, 5, 3, stride=2, padding=1)
    assert pc.cost(7, 9) == cost and pc.output_size(7, 9) == (4, 5)
    assert count_params(pc) == 140  # the ones kernel is a buffer, and not saved
    assert "ones" not in pc.state_dict()
    assert count_macs(pc, (torch.randn(1, 3, 7, 9), torch.ones(1, 1, 7, 9))) == 2980
    # per-channel mask, no bias, 5x3 kernel, no padding on 6x6 -> 2x4
    pc = PartialConv2d(2, 4, (5, 3), bias=False, mask_channels=2)
    assert pc.cost(6, 6) == partial_conv_cost(2, 4, (5, 3), 6, 6, bias=False, mask_channels=2) == {
        "params": 120, "macs": 8 * (4 * 2 * 15 + 2 * 15), "hadamard_mults": 2 * 36 + 4 * 8}
    assert count_params(pc) == 120
    assert count_macs(pc, (torch.randn(1, 2, 6, 6), torch.ones(1, 2, 6, 6))) == 8 * (4 * 2 * 15 + 2 * 15)


def test_partial_conv_rejects_bad_masks_and_settings():
    pc = PartialConv2d(3, 5, 3, padding=1)
    with pytest.raises(UserInputError, match=re.escape("expects the mask as [2, 1, 7, 8] (x's batch and size), "
                                                       "got [2, 1, 7, 9]")):
        pc(torch.randn(2, 3, 7, 8), torch.ones(2, 1, 7, 9))
    with pytest.raises(UserInputError, match=re.escape("expects x as [B, 3, H, W], got [2, 4, 7, 8]")):
        pc(torch.randn(2, 4, 7, 8), torch.ones(2, 1, 7, 8))
    with pytest.raises(UserInputError, match=re.escape("mask_channels must be 1 or in_channels (3), got 2")):
        PartialConv2d(3, 5, 3, mask_channels=2)
    with pytest.raises(UserInputError, match="padding must be an integer >= 0 or a pair of them, got 'same'"):
        PartialConv2d(3, 5, 3, padding="same")
