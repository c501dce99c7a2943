"""Rule fold-se: constant SE gates, folded into the next conv where the structure proves it is exact."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

from edgehad.blocks.squeeze_excite import SqueezeExcite
from edgehad.rewrite import apply_rules, explain, get_rules
from edgehad.rewrite.fold_se import ChannelScale


@functools.cache
def _digits():
    from edgehad.data import load_data

    return load_data("digits?size=32&channels=3")


@functools.cache
def _digits_8x8():
    from edgehad.data import load_data

    return load_data("digits")


def _train_batch(n=64):
    x = np.asarray(_digits().train[0])
    pick = np.random.default_rng(0).permutation(len(x))[:n]
    return torch.from_numpy(x[pick]).float()


def _mean_gates(model, x) -> dict[str, torch.Tensor]:
    """Each SE's gate g(x) [B, C, 1, 1] averaged over the batch, read by hooks on its gate module."""
    means, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, SqueezeExcite):
            hooks.append(m.gate.register_forward_hook(
                lambda mod, args, out, name=name: means.__setitem__(name, out.mean(0, keepdim=True))))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return means


def _kinds(report) -> dict[str, int]:
    kinds = [how.split(" ")[0] for how in report.how.values()]
    return {"folded": kinds.count("folded"), "ChannelScale": kinds.count("ChannelScale")}


def test_efficientnet_fold_is_exact_given_the_constant_gates():
    from edgehad.zoo import get_model

    model = get_model("efficientnet_b0", pretrained="digits")
    stats = _train_batch()
    new, (report,) = apply_rules(model, model.example_inputs, get_rules("fold-se"), stats_inputs=(stats,))
    assert not any(isinstance(m, (SqueezeExcite, ChannelScale)) for m in new.modules())
    assert len(report.rewritten) == 16 and _kinds(report) == {"folded": 16, "ChannelScale": 0}
    assert report.how["features.1.block.1"] == "folded into features.1.block.2.0 (W[:, c] *= s_c)"

    # the reference: the original model with each SE computing x * s, s its mean gate on the same inputs
    means = _mean_gates(model, stats)
    constant = copy.deepcopy(model)
    for name, m in constant.named_modules():
        if isinstance(m, SqueezeExcite):
            m.forward = lambda x, s=means[name]: x * s
    x = torch.from_numpy(np.asarray(_digits().val[0][:32])).float()
    with torch.no_grad():
        want, got, original = constant(x), new(x), model(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert (got - original).abs().max() > 0.1  # the gates did vary: the constants change the function


def test_mobilenet_v3_small_folds_every_gate():
    from edgehad.zoo import get_model

    model = get_model("mobilenet_v3_small", pretrained="digits")
    new, (report,) = apply_rules(model, model.example_inputs, get_rules("fold-se"), stats_inputs=(_train_batch(16),))
    assert len(report.rewritten) == 9 and _kinds(report) == {"folded": 9, "ChannelScale": 0}
    assert not any(isinstance(m, SqueezeExcite) for m in new.modules())


def test_gates_without_a_conv_after_them_become_channel_scales():
    from edgehad.zoo import get_model

    model = get_model("digits_cnn", gate="se")  # SE(32) -> MaxPool2d; SE(64) ends `features`
    x = torch.from_numpy(np.asarray(_digits_8x8().train[0][:64])).float()
    report = explain(model, model.example_inputs, get_rules("fold-se"))[0]
    assert report.how == {
        "features.2": "ChannelScale (y = x ⊙ s): next layer is MaxPool2d, not a Conv2d",
        "features.5": "ChannelScale (y = x ⊙ s): last child of its nn.Sequential (what reads its output is unknown)",
    }
    new, _ = apply_rules(model, model.example_inputs, get_rules("fold-se"), stats_inputs=(x,))
    means = _mean_gates(model, x)
    for name in ("features.2", "features.5"):
        scale = new.get_submodule(name)
        assert isinstance(scale, ChannelScale) and scale.scale.shape == (1, model.get_submodule(name).channels, 1, 1)
        torch.testing.assert_close(scale.scale, means[name].reshape(1, -1, 1, 1))


def _se_then(after: nn.Module) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), SqueezeExcite(8, reduction=2), after).eval()


@pytest.mark.parametrize("after, how", [
    (nn.Conv2d(8, 4, 3, padding=1, padding_mode="reflect"), "folded into 2 (W[:, c] *= s_c)"),
    (nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)), "folded into 2.0 (W[:, c] *= s_c)"),
    (nn.Conv2d(8, 4, 3, groups=2), "ChannelScale (y = x ⊙ s): next Conv2d has groups=2"),
])
def test_fold_or_scale_and_the_result_equals_constant_gates(after, how):
    model = _se_then(after)
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    new, (report,) = apply_rules(model, (x[:1],), get_rules("fold-se"), stats_inputs=(x,))
    assert report.how == {"1": how}
    s = _mean_gates(model, x)["1"]
    with torch.no_grad():
        want = model[2](model[0](x) * s)
        torch.testing.assert_close(new(x), want, atol=1e-5, rtol=0)
    assert isinstance(new[1], nn.Identity if how.startswith("folded") else ChannelScale)
    assert model[2] is not new[2] and isinstance(model[1], SqueezeExcite)  # the original is untouched


def test_a_shared_conv_is_not_folded_and_a_gate_called_twice_is_left():
    conv = nn.Conv2d(8, 8, 1)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), SqueezeExcite(8, reduction=2), conv, conv).eval()
    x = (torch.rand(1, 3, 4, 4),)
    report = explain(model, x, get_rules("fold-se"))[0]
    assert report.how == {"1": "ChannelScale (y = x ⊙ s): the next Conv2d or the SE is shared "
                               "(used in more than one place)"}

    se = SqueezeExcite(8, reduction=2)
    twice = nn.Sequential(nn.Conv2d(3, 8, 1), se, se).eval()
    report = explain(twice, x, get_rules("fold-se"))[0]
    assert report.rewritten == [] and report.skipped == {
        "1": "called 2 times per forward: one constant gate would stand for several"}


def test_the_rewrite_stage_takes_statistics_on_64_train_samples():
    from edgehad.core.artifact import Artifact
    from edgehad.core.pipeline import statistics_inputs as take
    from edgehad.stages.rewrite import STATS_SAMPLES

    def statistics_inputs(artifact):
        return take(artifact, STATS_SAMPLES)

    model = nn.Conv2d(3, 4, 1)
    example = (torch.zeros(1, 3, 32, 32),)
    data = _digits()
    (x,), what = statistics_inputs(Artifact(model=model, example_inputs=example, source={}, data=data))
    assert what == "64 train samples" and x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    train = torch.from_numpy(np.asarray(data.train[0]))
    rows = [int(torch.nonzero((train == row).flatten(1).all(1))[0]) for row in x]
    assert len(set(rows)) == 64 and rows != list(range(64))  # 64 distinct train rows, not the first 64
    assert statistics_inputs(Artifact(model=model, example_inputs=example, source={})) == \
        (None, "the example inputs (no data)")
    two = (example[0], example[0])
    assert statistics_inputs(Artifact(model=model, example_inputs=two, source={}, data=data)) == \
        (None, "the example inputs (the model takes 2 inputs)")
