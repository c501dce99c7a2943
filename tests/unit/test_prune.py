"""Pruning: coupled groups, criteria, plans and exact compaction, on real models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.core.pipeline import sample_inputs
from edgehad.prune import PruneSettings, find_groups, prune_model
from edgehad.prune.plan import keep_counts, kept_channels, rounded_keep
from tests.e2e.test_zoo_parity import SMALL


def _inputs(model):
    ex = model.example_inputs
    return (ex,) if isinstance(ex, torch.Tensor) else tuple(ex)


def _prune(model, ratio=0.5, **kw):
    ex = _inputs(model)
    return prune_model(model, ex, PruneSettings(ratio, **kw), sample_inputs=sample_inputs(ex, None, n=4))


def _shapes(model):
    return {n: tuple(m.weight.shape) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_compaction_equals_the_masked_model_on_every_zoo_model(name):
    from edgehad.zoo import get_model

    model = get_model(name, **SMALL[name]).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = _prune(model)
    assert result.masked_max_abs_error <= 1e-5
    assert result.after["params"] < result.before["params"]
    assert result.after["macs"] < result.before["macs"]
    pruned = [g for g in result.groups if "kept" in g]
    assert pruned and all(g["kept"] % 8 == 0 or g["kept"] == g["channels"] for g in pruned)
    for k, v in model.state_dict().items():  # the user's model is not touched
        assert torch.equal(v, before[k]), k
    with torch.no_grad():
        out = result.model(*_inputs(model))
        ref = model(*_inputs(model))
    assert out.shape == ref.shape  # the classifier output / decoder output keeps its size


def test_mobilenet_v2_half_the_channels_meets_the_cost_bars():
    from edgehad.zoo import get_model

    result = _prune(get_model("mobilenet_v2"))
    assert result.after["params"] / result.before["params"] <= 0.45
    assert result.after["macs"] / result.before["macs"] <= 0.35
    shapes = _shapes(result.model)
    assert shapes["features.0.0"][1] == 3          # the stem input is never pruned
    assert shapes["classifier.1"][0] == 1000       # nor the classifier output


def test_se_gate_layers_are_pruned_with_the_channels_they_scale():
    from edgehad.zoo import get_model

    model = get_model("digits_cnn", gate="se", act="silu")
    result = _prune(model)
    before, after = _shapes(model), _shapes(result.model)
    se = [n for n in after if n.endswith(".expand")]
    assert se
    for name in se:
        block = name.rsplit(".", 1)[0]
        gated = after[name][0]
        assert gated < before[name][0]
        assert after[f"{block}.reduce"][1] == gated  # the squeeze reads the same (pruned) channels


class SpatialGate(nn.Module):
    """y = x ⊙ sigmoid(conv_1(x)): a [B,1,H,W] gate broadcast over [B,C,H,W] (Torch-Pruning issue #510)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.gate = nn.Conv2d(16, 1, 1)
        self.head = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 5)
        self.example_inputs = (torch.randn(1, 3, 8, 8),)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = x * torch.sigmoid(self.gate(x))
        return self.fc(torch.relu(self.head(x)).mean((2, 3)))


class ChannelMeanGate(SpatialGate):
    """CBAM-style: the gate reads the mean over channels, a reduction torch-pruning treats as element-wise."""

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = x * torch.sigmoid(x.mean(1, keepdim=True))
        return self.fc(torch.relu(self.head(x)).mean((2, 3)))


def test_broadcast_gate_keeps_its_single_channel_and_loses_pruned_inputs():
    torch.manual_seed(0)
    model = SpatialGate().eval()
    result = _prune(model)
    shapes = _shapes(result.model)
    assert shapes["gate"] == (1, 8, 1, 1)
    assert shapes["conv"][0] == 8 and shapes["head"] == (8, 8, 3, 3)
    assert result.masked_max_abs_error <= 1e-5


def test_channel_mean_gate_is_pruned_and_reported_inexact():
    torch.manual_seed(0)
    result = _prune(ChannelMeanGate().eval())
    assert _shapes(result.model)["conv"][0] == 8
    assert any("reduction over channels" in n for n in result.notes)


class Readout(nn.Module):
    """conv(1->4); the next layer reads only channels 0 and 1 although 2 and 3 have the largest filters.

    Channel c's filter has its weight at tap c only, so a kept channel is recognised by where that weight is.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            for c, scale in enumerate((0.5, 0.6, 3.0, 4.0)):
                self.conv.weight[c].zero_()
                self.conv.weight[c, 0, c // 3, c % 3] = scale
            self.fc.weight.zero_()
            self.fc.weight[0, 0], self.fc.weight[1, 1] = 2.0, -2.0
        self.example_inputs = (torch.randn(1, 1, 8, 8),)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_criteria_disagree_where_they_should():
    from edgehad.data import DataSplits

    rng = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=rng).numpy()
    y = torch.randint(0, 2, (64,), generator=rng).numpy()
    data = DataSplits(train=(x, y), val=(x, y))
    model = Readout().eval()
    ex = _inputs(model)
    kept = {}
    for crit in ("magnitude", "bn-scale", "taylor", "learned"):
        r = prune_model(model, ex, PruneSettings(0.5, criterion=crit, round_to=1),
                        sample_inputs=sample_inputs(ex, None, n=2), data=data)
        w = r.model.conv.weight.detach().flatten(1).abs()
        kept[crit] = sorted(int(w[c].argmax()) for c in range(w.shape[0]))  # tap index = original channel
    assert kept["magnitude"] == [2, 3]       # largest filters
    assert kept["bn-scale"] == [2, 3]        # no BatchNorm: falls back to magnitude
    assert kept["taylor"] == [0, 1]          # the only channels the loss depends on
    assert kept["learned"] == [0, 1]         # the gates of unread channels are free to close


def test_bn_scale_keeps_the_largest_gammas():
    torch.manual_seed(0)
    model = SpatialGate().eval()
    with torch.no_grad():
        model.bn.weight.copy_(torch.arange(16, dtype=torch.float32) - 7.5)  # |gamma| largest at both ends
    ex = _inputs(model)
    r = prune_model(model, ex, PruneSettings(0.5, criterion="bn-scale"), sample_inputs=sample_inputs(ex, None, n=2))
    assert sorted(r.model.bn.weight.abs().tolist()) == pytest.approx([4.5, 4.5, 5.5, 5.5, 6.5, 6.5, 7.5, 7.5])


def test_rounding_and_global_scope():
    assert [rounded_keep(s, s * 0.5, 8) for s in (8, 16, 24, 96, 144)] == [8, 8, 16, 48, 72]
    assert rounded_keep(40, 1.0, 8) == 8          # never below one block
    assert kept_channels(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2) == [1, 3]

    class G:
        def __init__(self, name, size):
            self.name, self.size = name, size
    groups = [G("a", 16), G("b", 16)]
    # group a's channels are all alike, group b has 8 weak ones: global scope takes them from b only
    scores = {"a": torch.ones(16), "b": torch.cat([torch.full((8,), 0.01), torch.ones(8)])}
    assert keep_counts(groups, scores, 0.25, "global", 8) == {"a": 16, "b": 8}
    assert keep_counts(groups, scores, 0.5, "layer", 8) == {"a": 8, "b": 8}


def test_macs_target_removes_at_least_that_fraction_of_macs():
    from edgehad.zoo import get_model

    model = get_model("resnet8")
    r = _prune(model, 0.6, target="macs")
    assert r.after["macs"] / r.before["macs"] <= 0.4


def test_a_model_with_nothing_to_prune_is_an_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    model.example_inputs = (torch.randn(1, 64),)
    with pytest.raises(UserInputError, match="nothing in this model can be pruned"):
        _prune(model)


def test_unsafe_groups_are_skipped_or_stop_the_run():
    from edgehad.zoo import get_model

    model = get_model("transformer_encoder", **SMALL["transformer_encoder"])
    result = _prune(model)
    skipped = [g for g in result.groups if "breaks the model" in g.get("skipped", "")]
    assert skipped and all("qkv" in g["group"] for g in skipped)
    assert any(g["group"].endswith("fc1") or "kept" in g for g in result.groups)
    with pytest.raises(UserInputError, match="cannot be pruned safely"):
        _prune(model, unsafe="stop")


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_outside_the_unit_interval(ratio):
    with pytest.raises(UserInputError, match=r"must be in \[0, 1\)"):
        PruneSettings(ratio).check()


def test_groups_list_what_they_couple():
    from edgehad.zoo import get_model

    model = get_model("resnet8")
    _, groups = find_groups(model, _inputs(model))
    residual = max(groups, key=lambda g: len(g.producers))
    assert len(residual.producers) >= 2 and residual.norms  # a residual stream: several convs, their BNs
    assert any(not g.prunable and "model's output" in g.reason for g in groups)
