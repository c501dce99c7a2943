"""edgehad.export.prelu: the TFLite exporter's PReLU form is PReLU."""

import torch

from edgehad.export.prelu import prelu_once, single_layer_prelu


def test_prelu_once_equals_prelu_for_slopes_below_and_above_one():
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(0)) * 10
    a = torch.tensor([0.0, 0.25, 1.0, 3.0])
    want = torch.nn.functional.prelu(x, a)
    got = prelu_once(x, a.view(1, 4, 1, 1))
    assert torch.equal(got[x >= 0], x[x >= 0])  # the positive side exactly
    assert float((got - want).abs().max()) <= 1e-6 * float(x.abs().max())


def test_single_layer_prelu_swaps_litert_decomposition_and_restores_it():
    from litert_torch import fx_infra

    op = torch.ops.aten._prelu_kernel.default
    before = fx_infra.decomp.pre_convert_decomp().get(op)
    with single_layer_prelu():
        assert fx_infra.decomp.pre_convert_decomp()[op] is prelu_once
        assert fx_infra.decomp.pre_lower_decomp()[op] is prelu_once
    assert fx_infra.decomp.pre_convert_decomp().get(op) is before and before is not prelu_once
