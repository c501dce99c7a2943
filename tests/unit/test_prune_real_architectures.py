"""Pruning real architectures: PReLU and per-channel parameters, channel order before a flatten, the trial.

The ONet here has MTCNN's layout (facenet-pytorch's ONet: per-channel PReLU after each conv, a
``permute(0, 3, 2, 1)`` before the flatten into a Linear, three heads) with seeded random weights;
tests/e2e/test_prune_onet.py runs the same file through ``edgehad convert``.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.core.pipeline import sample_inputs
from edgehad.prune import PruneSettings, prune_model

ONET_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class ONet(nn.Module):
        """MTCNN's output network (48x48 face crops -> face score, box, 5 landmarks)."""

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 32, 3)
            self.prelu1 = nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = nn.Conv2d(32, 64, 3)
            self.prelu2 = nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3 = nn.Conv2d(64, 64, 3)
            self.prelu3 = nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4 = nn.Conv2d(64, 128, 2)
            self.prelu4 = nn.PReLU(128)
            self.dense5 = nn.Linear(1152, 256)
            self.prelu5 = nn.PReLU(256)
            self.dense6_1 = nn.Linear(256, 2)
            self.softmax6_1 = nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)
            with torch.no_grad():  # a slope of its own per channel, as in the trained network
                for m in self.modules():
                    if isinstance(m, nn.PReLU):
                        m.weight.uniform_(-0.5, 0.5)
            self.example_inputs = (torch.randn(1, 3, 48, 48),)

        def forward(self, x):
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.softmax6_1(self.dense6_1(x)), self.dense6_2(x), self.dense6_3(x)


    def onet():
        torch.manual_seed(0)
        return ONet().eval()
''')


def onet() -> nn.Module:
    namespace: dict = {}
    exec(compile(ONET_SOURCE, "onet.py", "exec"), namespace)
    return namespace["onet"]()


def _prune(model, ratio=0.3, messages=None, **kw):
    ex = tuple(model.example_inputs)
    return prune_model(model, ex, PruneSettings(ratio, **kw), sample_inputs=sample_inputs(ex, None, n=4),
                       progress=(messages.append if messages is not None else None))


def _kept(original: torch.Tensor, pruned: torch.Tensor) -> list[int]:
    """Which of a layer's channels survived, told by their (distinct, seeded) bias values."""
    return [int((original == v).nonzero()[0, 0]) for v in pruned]


@pytest.fixture(scope="module")
def onet_pruned():
    """ONet pruned by 30%, once for this module: (original, result, progress messages)."""
    model = onet()
    messages = []
    return model, _prune(model, messages=messages), messages


def test_onet_prunes_exactly_through_prelu_and_the_permute_before_its_flatten(onet_pruned):
    model, result, messages = onet_pruned
    pruned = result.model
    assert not [m for m in messages if m.startswith("warning")], messages
    assert result.masked_max_abs_error <= 1e-5
    # 30% of each group, rounded to multiples of 8; the three heads are the model's outputs
    counts = {("conv1", "prelu1"): 24, ("conv2", "prelu2"): 48, ("conv3", "prelu3"): 48, ("conv4", "prelu4"): 88,
              ("dense5", "prelu5"): 176}
    for (layer, act), n in counts.items():
        assert getattr(pruned, layer).weight.shape[0] == n
        prelu = getattr(pruned, act)
        assert tuple(prelu.weight.shape) == (n,) and prelu.num_parameters == n
        kept = _kept(getattr(model, layer).bias, getattr(pruned, layer).bias)
        assert torch.equal(prelu.weight, getattr(model, act).weight[kept])  # each slope stays with its channel
    assert [tuple(m.weight.shape) for m in (pruned.dense6_1, pruned.dense6_2, pruned.dense6_3)] == [
        (2, 176), (4, 176), (10, 176)]
    # after permute(0, 3, 2, 1) on [1, 128, 3, 3] the flat column of (c, h, w) is (w*3 + h)*128 + c
    assert pruned.dense5.in_features == 88 * 9
    kept4, kept5 = _kept(model.conv4.bias, pruned.conv4.bias), _kept(model.dense5.bias, pruned.dense5.bias)
    columns = sorted((w * 3 + h) * 128 + c for c in kept4 for h in range(3) for w in range(3))
    assert torch.equal(pruned.dense5.weight, model.dense5.weight[kept5][:, columns])
    assert result.before["params"] == 389040 and result.after["params"] == 191640


def test_onet_pruned_equals_the_original_with_the_removed_channels_zeroed(onet_pruned):
    """The same claim as ``masked_max_abs_error``, checked from outside: zero what went, compare outputs."""
    pruned = onet_pruned[1].model
    masked = onet()
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3", "conv4", "dense5"):
            layer = getattr(masked, name)
            kept = _kept(layer.bias, getattr(pruned, name).bias)
            gone = [c for c in range(layer.weight.shape[0]) if c not in kept]
            layer.weight[gone] = 0.0
            layer.bias[gone] = 0.0
    x = torch.randn(4, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in zip(masked(x), pruned(x)):
            assert a.shape == b.shape
            assert float((a - b).abs().max()) < 1e-4


class Affine(nn.Module):
    """y = x * s + b per channel, with bare parameters (one [1, C, 1, 1], one [C])."""

    def __init__(self, channels):
        super().__init__()
        self.scale = nn.Parameter(torch.rand(1, channels, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(channels))

    def forward(self, x):
        return x * self.scale + self.shift.view(1, -1, 1, 1)


class Between(nn.Module):
    """conv(3->16) -> ``mid`` -> conv(16->16) -> ReLU -> ``tail`` -> Linear: ``mid`` and ``tail`` vary."""

    def __init__(self, mid, tail=None, features=256):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.mid = mid
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(features, 5)
        self.tail = tail or (lambda x: x.flatten(1))
        self.example_inputs = (torch.randn(1, 3, 4, 4),)
        with torch.no_grad():  # a value of its own per channel, so that a wrong slice shows
            for p in mid.parameters():
                p.uniform_(0.5, 1.5)

    def forward(self, x):
        y = self.fc(self.tail(torch.relu(self.conv2(self.mid(self.conv(x))))))
        return y.mean(1) if y.dim() == 3 else y  # a Linear over rows of features: one vector per sample


PER_CHANNEL = [
    (nn.PReLU(16), {"weight": (8,)}),
    (nn.PReLU(), {"weight": (1,)}),                        # one shared slope: stays whole
    (Affine(16), {"scale": (1, 8, 1, 1), "shift": (8,)}),
    (nn.InstanceNorm2d(16, affine=True), {"weight": (8,), "bias": (8,)}),
    (nn.GroupNorm(16, 16), {"weight": (8,), "bias": (8,)}),  # one group per channel
]


@pytest.mark.parametrize("mid, shapes", PER_CHANNEL, ids=["prelu", "prelu-shared", "bare-affine", "instance-norm",
                                                          "group-norm-per-channel"])
def test_per_channel_parameters_are_sliced_with_their_group(mid, shapes):
    model = Between(mid).eval()
    messages = []
    result = _prune(model, 0.5, messages, round_to=1)
    assert not [m for m in messages if m.startswith("warning")], messages
    assert result.masked_max_abs_error <= 1e-5
    assert result.model.conv.out_channels == 8 and result.model.conv2.in_channels == 8
    assert {n: tuple(p.shape) for n, p in result.model.mid.named_parameters()} == shapes
    if isinstance(mid, nn.GroupNorm):
        assert result.model.mid.num_groups == result.model.mid.num_channels == 8


def test_group_norm_over_several_channels_keeps_its_group_whole():
    result = _prune(Between(nn.GroupNorm(4, 16)).eval(), 0.5, round_to=1)
    groups = {g["group"]: g for g in result.groups}
    assert groups["conv"]["skipped"] == ("GroupNorm 'mid' reads these channels together "
                                         "(removing one changes the others' outputs)")
    assert result.model.conv.out_channels == 16 and result.model.conv2.out_channels == 8


@pytest.mark.parametrize("tail", [lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], -1),
                                  lambda x: x.transpose(1, 3).flatten(1),
                                  lambda x: x.flatten(2).transpose(1, 2).flatten(1)],
                         ids=["permute-reshape", "transpose-flatten", "tokens-flatten"])
def test_channels_last_flattens_are_followed(tail):
    result = _prune(Between(nn.PReLU(16), tail).eval(), 0.5, round_to=1)
    assert result.masked_max_abs_error <= 1e-5
    assert result.model.conv2.out_channels == 8 and result.model.fc.in_features == 8 * 16


def test_a_conv1d_flattened_time_major_is_followed():
    """Keyword-spotting style: [N, C, T] -> [N, T, C] -> flat, channel c at columns t*C + c."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 16, 3, padding=1), nn.PReLU(16), Permute(0, 2, 1), nn.Flatten(),
                          nn.Linear(16 * 10, 3)).eval()
    model.example_inputs = (torch.randn(1, 4, 10),)
    result = _prune(model, 0.5, round_to=1)
    assert result.masked_max_abs_error <= 1e-5
    kept = _kept(model[0].bias, result.model[0].bias)
    columns = sorted(t * 16 + c for c in kept for t in range(10))
    assert torch.equal(result.model[4].weight, model[4].weight[:, columns])


class Permute(nn.Module):
    def __init__(self, *dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return x.permute(*self.dims)


def _rows(x):
    """Channels-last, then rows of 8 features: each of the Linear's input features mixes channels c and c + 8."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 8)


def test_a_view_that_cannot_be_followed_skips_its_group_with_a_warning_naming_it():
    model = Between(nn.ReLU(), _rows, features=8).eval()
    messages = []
    result = _prune(model, 0.5, messages, round_to=1)
    warnings = [m for m in messages if m.startswith("warning")]
    assert warnings == ["warning: prune: skipping conv2 (16 channels, read by fc): its channels cannot be followed "
                        "into 'fc' through the permute/transpose/view before it (each of its input features mixes "
                        "several channels)"]
    assert result.model.conv2.out_channels == 16 and result.model.conv.out_channels == 8
    assert result.masked_max_abs_error <= 1e-5
    with pytest.raises(UserInputError, match=r"group conv2 \(16 channels, layers conv2\) cannot be pruned safely: "
                                             "its channels cannot be followed into 'fc'"):
        _prune(model, 0.5, round_to=1, unsafe="stop")


def _shuffle(x):
    n, c, h, w = x.shape  # ShuffleNet's channel shuffle: which channels interleave depends on c
    return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, -1)


@pytest.mark.parametrize("mid, tail, culprit, readers", [
    (nn.Sigmoid(), None, "conv", "conv2"),     # a removed channel was a constant 0.5 the next conv read
    (nn.ReLU(), _shuffle, "conv2", "fc"),      # followed exactly, but the shuffle itself changes with the count
], ids=["sigmoid-into-conv", "channel-shuffle"])
def test_the_trial_skips_every_group_whose_compaction_is_not_exact(mid, tail, culprit, readers):
    messages = []
    result = _prune(Between(mid, tail).eval(), 0.5, messages, round_to=1)
    warnings = [m for m in messages if m.startswith("warning")]
    assert len(warnings) == 1
    head = f"warning: prune: skipping {culprit} (16 channels, read by {readers}): removing its channels changes what"
    assert warnings[0].startswith(head)
    error = float(re.search(r"max abs error ([\d.e-]+) between the masked and the compacted model", warnings[0])[1])
    assert error > 1e-3
    assert result.masked_max_abs_error <= 1e-5  # the rest was pruned, exactly
    assert getattr(result.model, culprit).out_channels == 16
    other = "conv2" if culprit == "conv" else "conv"
    assert getattr(result.model, other).out_channels == 8


def test_bisection_names_exactly_the_culprits_in_few_trials():
    from edgehad.prune.trial import _culprits

    names = [f"g{i:02d}" for i in range(32)]
    bad = {"g03", "g17", "g30"}
    calls = []

    def check(part):
        calls.append(list(part))
        hit = sorted(bad & set(part))
        return f"broken by {', '.join(hit)}" if hit else ""

    found = _culprits(names, check)
    assert found == {"g03": "broken by g03", "g17": "broken by g17", "g30": "broken by g30"}
    assert len(calls) <= 2 * 3 * 5 + 2  # 2k·log2(n) halves, and the whole set tried before and after
    assert calls[-1] == [n for n in names if n not in bad]  # what is left was tried together, and passed
    # two groups fine alone but not together cannot be told apart: both are named
    assert set(_culprits(["a", "b"], lambda part: "together" if len(part) == 2 else "")) == {"a", "b"}


def test_no_message_asks_the_user_to_report_a_model():
    package = Path(__file__).resolve().parents[2] / "edgehad"
    hits = [str(p) for p in package.rglob("*.py") if "please report" in p.read_text(encoding="utf-8").lower()]
    assert hits == []
