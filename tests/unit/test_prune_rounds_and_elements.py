"""Pruning's rounds (schedule.py), element masks (unstructured.py) and latency check (latency.py), on small nets.

Cheap on purpose: these modules are otherwise reached only by the e2e conversions of the slow lane.
"""

import pytest
import torch
from torch import nn

from edgehad.prune import PruneSettings
from edgehad.prune.latency import compare_latency
from edgehad.prune.schedule import prune_gradually
from edgehad.prune.unstructured import prune_elements


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()


EXAMPLE = (torch.rand(1, 1, 8, 8),)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_elements_zero_the_smallest_weights(scope):
    model = net()
    before = [m.weight.detach().clone() for m in model if hasattr(m, "weight")]
    result = prune_elements(model, 0.5, scope=scope)
    after = [m.weight.detach() for m in result.model if hasattr(m, "weight")]
    assert all(torch.equal(a, b) for a, b in zip(before, [m.weight for m in model if hasattr(m, "weight")]))
    total = sum(w.numel() for w in before)
    zeros = [int((w == 0).sum()) for w in after]
    if scope == "layer":  # half of each layer, exactly (no ties among seeded normal weights)
        assert zeros == [w.numel() // 2 for w in before]
    else:
        assert sum(zeros) == total // 2
        threshold = torch.cat([w.abs().flatten() for w in before]).kthvalue(total // 2).values
    for w0, w1 in zip(before, after):
        kept = w1 != 0
        torch.testing.assert_close(w1[kept], w0[kept])  # survivors are untouched
        if scope == "layer":
            assert w0[~kept].abs().max() <= w0[kept].abs().min()
        else:
            assert w0[~kept].abs().max() <= threshold < w0[kept].abs().min()
    assert [r["zero"] for r in result.layers] == zeros


def test_rounds_remove_the_same_share_as_one_shot():
    settings = PruneSettings(ratio=0.75, round_to=1, samples=4)
    samples = [(torch.rand(1, 1, 8, 8),) for _ in range(4)]
    result = prune_gradually(net(), EXAMPLE, settings, steps=2, step_epochs=0, sample_inputs=samples)
    convs = [m for m in result.model if isinstance(m, nn.Conv2d)]
    # 1 - (1 - 0.75) ** (1/2) = 0.5 per round: 16 -> 8 -> 4 channels on the first conv
    assert convs[0].out_channels == 4, [m.out_channels for m in convs]
    with torch.no_grad():
        assert result.model(*EXAMPLE).shape == (1, 10)


def test_latency_compares_both_models_in_onnxruntime(tmp_path):
    pruned = prune_gradually(net(), EXAMPLE, PruneSettings(ratio=0.5, round_to=1, samples=2), steps=1,
                             step_epochs=0, sample_inputs=[EXAMPLE]).model
    result = compare_latency(net(), pruned, EXAMPLE, tmp_path, formats=("onnx",), runs=10)
    onnx = result["onnx"]
    assert onnx["original_ms"] > 0 and onnx["pruned_ms"] > 0
    # the ratio is of the unrounded medians; the ms shown are rounded to 0.1 us
    assert onnx["ratio"] == pytest.approx(onnx["pruned_ms"] / onnx["original_ms"], rel=0.02)
    assert "median of 10 interleaved runs" in result["method"]
