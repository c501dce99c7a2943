"""Depth pruning (edgehad.prune.blocks): which modules are residual blocks, their influence, their removal;
the prune stage's `blocks` key and its refusals; the blocks search space (issue #16)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.prune.blocks import block_influence, drop_blocks, is_residual, residual_blocks
from edgehad.zoo import get_model


class Residual(nn.Module):
    def __init__(self, after_add=False):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.after_add = after_add

    def forward(self, x):
        y = x + self.f(x)
        return torch.relu(y) if self.after_add else y


class Swapped(Residual):
    def forward(self, x):
        return self.f(x) + x


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = Residual(), Residual(after_add=True)
        self.c, self.d = Swapped(), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.d(self.c(self.b(self.a(x))))


def test_a_block_is_a_module_returning_its_input_plus_a_branch():
    model = Chain()
    assert is_residual(model.a) and is_residual(model.c)
    assert not is_residual(model.b)   # ReLU after the sum: removing it would drop the ReLU too
    assert not is_residual(model.d)   # a leaf layer
    assert not is_residual(model)     # a chain
    assert [n for n, _ in residual_blocks(model)] == ["a", "c"]


def test_efficientnet_b0_has_nine_residual_blocks_and_mobilenet_v2_ten():
    eff = [n for n, _ in residual_blocks(get_model("efficientnet_b0"))]
    assert eff == ["features.3", "features.5", "features.7", "features.8", "features.10", "features.11",
                   "features.13", "features.14", "features.15"]
    assert len(residual_blocks(get_model("mobilenet_v2"))) == 10
    assert residual_blocks(get_model("digits_cnn")) == []


def test_influence_is_one_minus_the_mean_cosine_of_input_and_output_and_the_lowest_go_first():
    torch.manual_seed(0)
    model = Chain().eval()
    x = torch.randn(6, 4, 8, 8)
    blocks = residual_blocks(model)
    bi = block_influence(model, blocks, (x,))
    with torch.no_grad():
        a_in, a_out = x, model.a(x)
        c_in = model.b(a_out)
        c_out = model.c(c_in)
    cos = torch.nn.functional.cosine_similarity
    assert bi["a"] == pytest.approx(1 - float(cos(a_in.flatten(1), a_out.flatten(1)).mean()), abs=1e-6)
    assert bi["c"] == pytest.approx(1 - float(cos(c_in.flatten(1), c_out.flatten(1)).mean()), abs=1e-6)

    drop = drop_blocks(model, 0.5, (x,))
    lowest = min(bi, key=bi.get)
    assert drop.candidates == 2 and drop.removed == [lowest]
    assert isinstance(drop.model.get_submodule(lowest), nn.Identity)
    assert not isinstance(model.get_submodule(lowest), nn.Identity)   # the caller's model is untouched
    kept = "c" if lowest == "a" else "a"
    with torch.no_grad():   # what is left computes the model with that block as the identity
        expected = model.d(model.c(model.b(x))) if lowest == "a" else model.d(model.b(model.a(x)))
        assert torch.allclose(drop.model(x), expected, atol=1e-6)
    assert not isinstance(drop.model.get_submodule(kept), nn.Identity)
    assert drop_blocks(model, 1.0, (x,)).removed == sorted(bi, key=bi.get)


def test_efficientnet_half_its_blocks_by_influence_on_digits():
    from edgehad.data import load_data

    model = get_model("efficientnet_b0", pretrained="digits")
    x = torch.from_numpy(load_data("digits?size=32&channels=3").train[0][:64]).float()
    drop = drop_blocks(model, 0.5, (x,))
    assert drop.candidates == 9 and len(drop.removed) == 5   # round(4.5) up: int(0.5 * 9 + 0.5)
    ranked = sorted(drop.influence, key=drop.influence.get)
    assert drop.removed == ranked[:5]
    assert all(0.0 <= v <= 2.0 for v in drop.influence.values())
    assert drop.model(x[:2]).shape == (2, 10)


def _prune_stage(**opts):
    from edgehad.stages.prune import Prune

    return Prune(**opts)


def test_the_stage_refuses_blocks_with_zeroed_elements_and_takes_them_with_a_latency_target():
    with pytest.raises(UserInputError, match=r"`prune_blocks` removes whole blocks.*use channels"):
        _prune_stage(blocks=0.5, structure="elements")
    assert _prune_stage(blocks=0.5, target="latency", ratio=0.5).config["blocks"] == 0.5


def test_removed_layers_are_the_blocks_layers():
    from edgehad.prune.allocate import removed_layers
    from edgehad.prune.latency_table import layer_specs

    torch.manual_seed(0)
    model = get_model("mobilenet_v2", width_mult=0.35, num_classes=10, input_size=64).eval()
    x = (torch.randn(2, 3, 64, 64),)
    drop = drop_blocks(model, 0.3, x)
    gone = removed_layers(model, layer_specs(drop.model, x), x)
    assert len(drop.removed) == 3
    assert sorted(gone) == sorted(name for name in layer_specs(model, x)
                                  if any(name.startswith(b + ".") for b in drop.removed))
    assert len(gone) == 9   # expand, depthwise, project per block


def test_blocks_on_a_model_without_residual_blocks_is_one_line(tmp_path):
    from edgehad.api import convert

    with pytest.raises(UserInputError, match=r"^`prune_blocks`: this model has no residual block .*drop `prune_blocks`$"):
        convert("zoo:digits_cnn", prune_blocks=0.5, formats="onnx", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_blocks_space_builds_plain_recipes():
    from edgehad.search.space import load_space

    space = load_space("blocks")
    assert [p.name for p in space.params] == ["rewrite.rules", "prune.blocks", "prune.ratio", "finetune.epochs"]
    plain = space.recipe({"rewrite.rules": "", "prune.blocks": 0.0, "prune.ratio": 0.0, "finetune.epochs": 3}, "d")
    assert sorted(plain["stages"]) == ["export-tflite", "quantize"]   # no rule, nothing pruned: nothing to recover
    deep = space.recipe({"rewrite.rules": "fold-se", "prune.blocks": 0.5, "prune.ratio": 0.0,
                         "finetune.epochs": 6}, "d")["stages"]
    assert deep["rewrite"] == {"rules": "fold-se"}
    assert deep["prune"]["blocks"] == 0.5 and deep["prune"]["ratio"] == 0.0 and deep["finetune"]["epochs"] == 6
    # 3e-3, not the stage's 1e-3: with every block gone, 6 epochs at 1e-3 lost 1.1 points (README)
    assert deep["finetune"]["lr"] == 0.003 and deep["finetune"]["distill"] is True


def test_with_a_latency_cost_blocks_rank_by_influence_per_microsecond():
    torch.manual_seed(0)
    model = get_model("mobilenet_v2", width_mult=0.35, num_classes=10, input_size=64).eval()
    x = (torch.randn(4, 3, 64, 64),)
    plain = drop_blocks(model, 0.2, x)
    most = max(plain.influence, key=plain.influence.get)   # the last block influence alone would take
    cost = {name: (1e6 if name == most else 1.0) for name in plain.influence}
    timed = drop_blocks(model, 0.2, x, cost=lambda names: {n: cost[n] for n in names})
    assert most not in plain.removed and timed.removed[0] == most
    by_ratio = sorted(plain.influence, key=lambda n: plain.influence[n] / cost[n])
    assert timed.removed == by_ratio[:2]
    assert timed.as_dict()["ranked_by"] == "influence per table microsecond"
    assert timed.as_dict()["table_us"][most] == 1e6 and plain.as_dict()["ranked_by"] == "influence"
