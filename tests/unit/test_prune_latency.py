"""Latency-aware pruning: the allocation on synthetic tables (against brute force), the table's cache, the glue."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from edgehad.prune.allocate import (LayerUse, Problem, allocate, candidate_widths, importance_lost,
                                    layer_uses)
from edgehad.prune.latency_table import LatencyTable, LayerSpec, layer_specs, layer_us, one_layer_onnx


def brute_force(problem: Problem, keep: float):
    """Every combination of widths: the least importance lost with the table's total within ``keep``."""
    groups = list(problem.candidates)
    budget = keep * problem.total({g: c[0] for g, c in problem.candidates.items()})
    best, best_lost = None, float("inf")
    for combo in itertools.product(*(problem.candidates[g] for g in groups)):
        w = dict(zip(groups, combo))
        lost = sum(problem.lost[g][w[g]] for g in groups)
        if problem.total(w) <= budget and lost < best_lost:
            best, best_lost = w, lost
    return best, best_lost


def _problem(coupled: bool, seed: int) -> Problem:
    """Three groups of 32/48/64 channels, five widths each; per-channel costs that differ by layer and
    are not linear in the width (int8 kernels: a multiple of 16 runs faster than the width below it)."""
    rng = np.random.default_rng(seed)
    sizes = {"a": 32, "b": 48, "c": 64}
    candidates = {g: [n, n * 3 // 4, n // 2, n // 4, 8] for g, n in sizes.items()}
    lost = {}
    for g, n in sizes.items():
        scores = torch.tensor(rng.uniform(0.1, 2.0, n))
        lost[g] = importance_lost(scores, candidates[g])
    if coupled:  # a -> b -> c chain: the middle layers read one group and write the next
        layers = [LayerUse("l0", 3, 32, writes={"a": 1.0}), LayerUse("l1", 32, 48, reads={"a": 1.0}, writes={"b": 1.0}),
                  LayerUse("l2", 48, 64, reads={"b": 1.0}, writes={"c": 1.0}), LayerUse("l3", 64, 10, reads={"c": 1.0})]
    else:  # each layer touches one group only: the latency is separable and the knapsack exact
        layers = [LayerUse("l0", 3, 32, writes={"a": 1.0}), LayerUse("l1", 3, 48, writes={"b": 1.0}),
                  LayerUse("l2", 3, 64, writes={"c": 1.0})]
    per_mac = {layer.name: float(rng.uniform(0.5, 3.0)) for layer in layers}

    def latency(name, cin, cout):
        return 2.0 + per_mac[name] * cin * cout / 16 * (1.0 if cout % 16 == 0 else 1.4)

    return Problem(candidates, lost, layers, latency, rest=5.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("keep", [0.45, 0.6, 0.8])   # the narrowest widths reach 0.38-0.41 here
def test_separable_allocation_is_the_brute_force_optimum(keep, seed):
    problem = _problem(coupled=False, seed=seed)
    plan = allocate(problem, keep)
    best, best_lost = brute_force(problem, keep)
    assert best is not None
    assert plan.met and plan.predicted_us <= keep * plan.full_us + 1e-9
    assert plan.lost == pytest.approx(best_lost)
    assert plan.predicted_ratio == pytest.approx(problem.total(plan.widths) / problem.total(
        {g: c[0] for g, c in problem.candidates.items()}))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("keep", [0.35, 0.5, 0.75])
def test_coupled_allocation_reaches_the_budget_at_the_optimum(keep, seed):
    problem = _problem(coupled=True, seed=seed)
    plan = allocate(problem, keep)
    _, best_lost = brute_force(problem, keep)
    assert plan.met and problem.total(plan.widths) <= keep * plan.full_us + 1e-9
    # the knapsack's per-group costs are an estimate where a layer reads one group and writes another;
    # re-solving around the solution got 7 of these 9 (6-13% above on the others), the local search
    # on the exact table after it all 9
    assert plan.lost == pytest.approx(best_lost)


def test_an_unreachable_budget_ends_at_the_narrowest_widths_that_save():
    problem = _problem(coupled=True, seed=0)
    plan = allocate(problem, 0.01)
    assert not plan.met
    assert plan.widths == {"a": 8, "b": 8, "c": 8}
    assert plan.predicted_ratio == pytest.approx(problem.total(plan.widths) / plan.full_us)


def test_the_latency_of_removed_blocks_counts_in_the_full_model():
    """Problem.gone: the ratio asked counts from the model before its blocks went, so the widths pay less."""
    problem = _problem(coupled=True, seed=0)
    full = {g: c[0] for g, c in problem.candidates.items()}
    here = problem.total(full)
    problem.gone = here   # blocks as slow as the rest went: the full model took 2x what is left
    assert allocate(problem, 0.5).widths == full           # half the original's time: already there
    plan = allocate(problem, 0.3)                           # 0.6 of what is left
    assert plan.full_us == pytest.approx(2 * here) and plan.met
    assert problem.total(plan.widths) <= 0.6 * here + 1e-9 and plan.predicted_ratio <= 0.3 + 1e-9
    problem.gone = 0.0
    assert plan.lost == pytest.approx(brute_force(problem, 0.6)[1])   # the same optimum as asking 0.6 of it


def test_candidates_and_importance_lost():
    assert candidate_widths(96, 16) == [96, 80, 64, 48, 32, 16]
    assert candidate_widths(8, 16) == [8]   # a group no wider than round_to is not narrowed
    lost = importance_lost(torch.tensor([4.0, 1.0, 2.0, 1.0]), [4, 2, 1])
    assert lost == {4: 0.0, 2: pytest.approx(2.0 / 8.0), 1: pytest.approx(4.0 / 8.0)}  # shares of the total 8


def test_layer_widths_follow_their_groups():
    sizes, w = {"g": 64, "h": 32}, {"g": 48, "h": 16}
    assert LayerUse("pw", 32, 64, reads={"h": 1.0}, writes={"g": 1.0}).widths(sizes, w) == (16, 48)
    assert LayerUse("dw", 64, 64, writes={"g": 1.0}, depthwise=1).widths(sizes, w) == (48, 48)
    # a concat reader holds half of g's channels among 96 inputs: it loses half of what g loses
    assert LayerUse("cat", 96, 10, reads={"g": 0.5}).widths(sizes, w) == (88, 10)


class _Block(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project, the MobileNetV2 shape the table is for."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(8, 32, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.project = nn.Conv2d(32, 16, 1)
        self.fc = nn.Linear(16, 4)
        self.example_inputs = (torch.randn(1, 8, 12, 12),)

    def forward(self, x):
        x = self.dw(torch.relu(self.bn1(self.expand(x))))
        x = self.project(torch.relu(self.bn2(x)))
        return self.fc(x.mean((2, 3)))


def test_layer_specs_and_uses_of_a_real_model():
    from edgehad.prune import find_groups

    model = _Block().eval()
    specs = layer_specs(model, model.example_inputs)
    assert specs["dw"] == LayerSpec("conv2d", (1, 32, 12, 12), 32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 32, False)
    assert specs["dw"].depthwise and not specs["expand"].depthwise
    assert specs["fc"] == LayerSpec("linear", (1, 16), 16, 4, bias=True)
    _, groups = find_groups(model, model.example_inputs)
    uses, untimed = layer_uses([g for g in groups if g.prunable], specs)
    by = {u.name: u for u in uses}
    assert untimed == []
    assert set(by) == {"expand", "dw", "project", "fc"}
    # expand, its BatchNorm and the depthwise conv share one group (named for its first producer, dw)
    expand_group = next(g for g in groups if "expand" in {m.name for m in g.producers}).name
    assert expand_group == "dw"
    assert by["expand"].writes == {expand_group: 1.0} and by["dw"].writes == {expand_group: 1.0}
    assert by["dw"].reads == {} and by["dw"].depthwise == 1
    assert by["project"].reads == {expand_group: 1.0}


@pytest.mark.parametrize("spec", [
    LayerSpec("conv2d", (1, 16, 14, 14), 16, 32, (3, 3), (2, 2), (1, 1), (1, 1), 1, True),
    LayerSpec("conv2d", (1, 32, 14, 14), 32, 32, (3, 3), (1, 1), (1, 1), (1, 1), 32, False),
    LayerSpec("linear", (1, 64), 64, 10, bias=True),
    LayerSpec("linear", (1, 5, 64), 64, 48, bias=False),
], ids=["conv", "depthwise", "linear", "linear3d"])
def test_one_layer_models_compute_the_layer_in_both_schemes(spec):
    import onnxruntime as ort

    outs = {}
    for scheme in ("fp32", "int8"):
        model, feed = one_layer_onnx(spec, spec.cin // 2 if not spec.depthwise else 16, spec.cout // 2
                                     if not spec.depthwise else 16, scheme)
        (outs[scheme],) = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)
        assert layer_us(model, feed, threads=1, warmup=1, runs=4) > 0
    want = (1, 16, 7, 7) if spec.kind == "conv2d" and spec.stride == (2, 2) else None
    if want:
        assert outs["fp32"].shape == want
    assert outs["int8"].shape == outs["fp32"].shape
    a, b = outs["fp32"].ravel(), outs["int8"].ravel()
    assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.98   # the QDQ form is the same layer


def test_the_cache_makes_a_second_table_measure_nothing(tmp_path):
    spec = LayerSpec("conv2d", (1, 16, 8, 8), 16, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, False)
    first = LatencyTable("onnx", "fp32", folder=tmp_path)
    values = [first.us(spec, 16, 32), first.us(spec, 16, 16), first.us(spec, 16, 16)]
    assert first.measured == 2 and all(v > 0 for v in values)
    first.save()
    assert [p.parent for p in tmp_path.iterdir()] == [tmp_path] and first.path.exists()

    second = LatencyTable("onnx", "fp32", folder=tmp_path)
    assert [second.us(spec, 16, 32), second.us(spec, 16, 16)] == values[:2]
    assert second.measured == 0
    other = LatencyTable("onnx", "int8", folder=tmp_path)   # another scheme is another entry
    other.us(spec, 16, 32)
    assert other.measured == 1
    other.save()
    third = LatencyTable("onnx", "fp32", folder=tmp_path)   # saving int8 kept the fp32 entries
    third.us(spec, 16, 16)
    assert third.measured == 0 and len(third.entries) == 3


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    from edgehad.prune.latency_table import cache_dir

    monkeypatch.delenv("EDGEHAD_LATENCY_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "edgehad" / "latency"
    monkeypatch.setenv("EDGEHAD_LATENCY_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert LatencyTable(folder=None).path.parent == tmp_path / "mine"


def test_bad_settings_are_refused_before_any_model_loads():
    from edgehad.core.errors import UserInputError
    from edgehad.stages.prune import Prune

    with pytest.raises(UserInputError, match="`prune_target='latency'` needs `prune_structure='channels'`"):
        Prune(target="latency", structure="elements")
    with pytest.raises(UserInputError, match="use `prune_steps=1`"):
        Prune(target="latency", steps=3)
    stage = Prune(target="latency")
    with pytest.raises(UserInputError, match="writes no ONNX file"):
        stage.see_pipeline([stage])


def test_the_calibration_fits_a_power_law_through_the_measurements():
    from edgehad.prune.allocate import calibrated

    assert calibrated([], 0.4) == 0.4                           # nothing measured: the table's ratio
    one = [(0.5, 0.25)]                                         # r = x^2 through (1, 1)
    assert calibrated(one, 0.5) == pytest.approx(0.25)
    assert calibrated(one, 0.8) == pytest.approx(0.64)
    assert calibrated(one, 0.36, inverse=True) == pytest.approx(0.6)
    # two timings that disagree: least squares in log-log, gamma = sum(lx lr) / sum(lx^2)
    two = [(0.5, 0.25), (0.25, 0.25)]
    lx, lr = np.log([0.5, 0.25]), np.log([0.25, 0.25])
    gamma = float(lx @ lr / (lx @ lx))
    assert 1 < gamma < 2
    assert calibrated(two, 0.4) == pytest.approx(0.4 ** gamma)
    assert calibrated(two, 0.4 ** gamma, inverse=True) == pytest.approx(0.4)
    # a timing no power law can hold (pruned slower than the original) is clamped, not extrapolated
    assert calibrated([(0.5, 1.2)], 0.25) == pytest.approx(0.25 ** 0.3)
