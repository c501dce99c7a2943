"""Named data: arrays by a model's input names (token ids, attention mask), for models with several inputs.

The loader keeps every dtype, splits the samples alike across arrays, and ``bind_data`` matches the names
to the model's forward arguments, with one line naming both when they differ.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.core.pipeline import bind_data, fitting_samples, model_input_names, sample_inputs
from edgehad.data import load_data
from edgehad.quantize.calibration import calibration_inputs

N, L = 50, 6


def tokens(n=N, seed=0):
    """Sample i has input_ids[i, 0] == i: a row's identity survives the split, in every array."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(100, 30000, (n, L)).astype(np.int64)
    ids[:, 0] = np.arange(n)
    mask = (np.arange(L)[None, :] < rng.integers(2, L + 1, (n, 1))).astype(np.int32)
    return ids, mask


class Encoder(nn.Module):
    """(input_ids, attention_mask) -> [N, 3] logits: a two-input model like a text encoder."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.head = nn.Embedding(30000, 8), nn.Linear(8, 3)
        self.example_inputs = (torch.zeros(1, L, dtype=torch.int64), torch.ones(1, L, dtype=torch.int64))

    def forward(self, input_ids, attention_mask):
        m = attention_mask.unsqueeze(-1).float()
        return self.head((self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1))


def test_npz_by_input_name_keeps_dtypes_and_splits_rows_alike(tmp_path):
    ids, mask = tokens()
    y = np.arange(N) % 2
    path = tmp_path / "tok.npz"
    np.savez(path, input_ids=ids, attention_mask=mask, y=y)
    d = load_data(str(path))
    assert d.input_names == ["input_ids", "attention_mask"] and d.labelled
    xt, yt = d.train
    xv, yv = d.val
    assert xt["input_ids"].dtype == np.int64 and xt["attention_mask"].dtype == np.int32  # not float32
    assert len(yt) == 40 and len(yv) == 10 and np.bincount(yv).tolist() == [5, 5]  # 80/20, stratified
    # the same split as an x, y file of the same labels: seed 0, the indices split, not the arrays
    np.savez(tmp_path / "xy.npz", x=np.arange(N, dtype=np.float32)[:, None], y=y)
    classic = load_data(str(tmp_path / "xy.npz"))
    assert xv["input_ids"][:, 0].tolist() == classic.val[0][:, 0].astype(int).tolist()
    for x, labels in ((xt, yt), (xv, yv)):  # each row's mask and label came with its ids
        rows = x["input_ids"][:, 0]
        assert np.array_equal(x["attention_mask"], mask[rows]) and np.array_equal(labels, y[rows])
    assert d.preprocessing["npz_layout"] == "input_ids, attention_mask, y split 80/20 stratified, seed 0"


def test_npz_without_labels_splits_80_20_and_measures_no_accuracy(tmp_path):
    ids, mask = tokens()
    np.savez(tmp_path / "tok.npz", input_ids=ids, attention_mask=mask)
    d = load_data(str(tmp_path / "tok.npz"))
    assert not d.labelled and d.train[1] is None and d.val[1] is None
    rows = np.concatenate([d.train[0]["input_ids"][:, 0], d.val[0]["input_ids"][:, 0]])
    assert len(d.val[0]["input_ids"]) == 10 and sorted(rows.tolist()) == list(range(N))


def test_npz_with_explicit_splits(tmp_path):
    ids, mask = tokens()
    np.savez(tmp_path / "s.npz", input_ids_train=ids[:30], attention_mask_train=mask[:30], y_train=np.zeros(30, int),
             input_ids_val=ids[30:], attention_mask_val=mask[30:], y_val=np.ones(20, int))
    d = load_data(str(tmp_path / "s.npz"))
    assert np.array_equal(d.train[0]["input_ids"], ids[:30]) and np.array_equal(d.val[0]["attention_mask"], mask[30:])
    assert d.val[1].tolist() == [1] * 20 and d.val[1].dtype == np.int64


@pytest.mark.parametrize("arrays, message", [
    (lambda ids, mask: {"input_ids_train": ids, "attention_mask": mask},
     "arrays attention_mask have no _train / _val suffix but input_ids_train do: suffix every array"),
    (lambda ids, mask: {"input_ids_train": ids, "attention_mask_train": mask, "input_ids_val": ids},
     "the train arrays (input_ids, attention_mask) and the val arrays (input_ids) name different inputs"),
    (lambda ids, mask: {"input_ids": ids, "attention_mask": mask[:-1]},
     "the inputs hold different numbers of samples (input_ids 50, attention_mask 49): give every input one row"),
    (lambda ids, mask: {"input_ids": ids, "scale": np.where(np.arange(N) == 7, np.nan, 1.0)},
     "array 'scale' holds NaN or infinite values in 1 of 50 samples (first: sample 7)"),
    (lambda ids, mask: {"input_ids": ids, "y": np.arange(N) - 1},
     "array 'y' holds negative labels (1 of 50, min -1)"),
])
def test_npz_named_refusals(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays(*tokens()))
    with pytest.raises(UserInputError) as err:
        load_data(str(path))
    assert message in str(err.value) and str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_bind_puts_the_arrays_in_the_models_order_and_dtypes(tmp_path):
    ids, mask = tokens()
    model = Encoder()
    assert model_input_names(model, 2) == ["input_ids", "attention_mask"]
    np.savez(tmp_path / "t.npz", attention_mask=mask, input_ids=ids.astype(np.int32))  # other order and dtype
    bound = bind_data(load_data(str(tmp_path / "t.npz")), model, model.example_inputs)
    assert bound.input_names == ["input_ids", "attention_mask"]
    assert all(a.dtype == np.int64 and a.shape == (10, 1, L) for a in bound.val[0].values())  # the model's dtype
    samples = sample_inputs(model.example_inputs, bound, n=4)
    assert len(samples) == 4 and [a.shape for a in samples[0]] == [(1, L), (1, L)]
    row = bound.val[0]["input_ids"][2, 0, 0]
    assert np.array_equal(samples[2][0][0], ids[row]) and np.array_equal(samples[2][1][0], mask[row])
    calib = calibration_inputs(model.example_inputs, bound, n=40)
    assert len(calib) == 40 and calib[39][1].dtype == np.int64 and calib[39][1].shape == (1, L)
    with pytest.raises(UserInputError, match="calibration asked for 41 samples but .* has 40 in its train split"):
        calibration_inputs(model.example_inputs, bound, n=41)


def test_bind_refusals_name_what_differs(tmp_path):
    ids, mask = tokens()
    model = Encoder()

    def bind(**arrays):
        np.savez(tmp_path / "t.npz", **arrays)
        return bind_data(load_data(str(tmp_path / "t.npz")), model, model.example_inputs)

    with pytest.raises(UserInputError) as err:
        bind(input_ids=ids, mask=mask)
    assert str(err.value) == (f"`data` {tmp_path / 't.npz'} gives inputs input_ids, mask but the model takes "
                              "input_ids, attention_mask (its forward arguments): name the arrays so")
    with pytest.raises(UserInputError, match="gives inputs input_ids, attention_mask, labels .*; labels go in an "
                                             "array named y$"):
        bind(input_ids=ids, attention_mask=mask, labels=np.zeros(N, int))
    with pytest.raises(UserInputError, match="input input_ids holds float32 values but the model takes int64: "
                                             "save it as integers"):
        bind(input_ids=ids.astype(np.float32), attention_mask=mask)
    with pytest.raises(UserInputError, match="input attention_mask has samples of shape 5 but the model takes 6 per "
                                             "sample: give arrays of that shape"):
        bind(input_ids=ids, attention_mask=mask[:, :5])
    with pytest.raises(UserInputError, match=r"gives one input x, but the model takes 2 \(input_ids, attention_mask\): "
                                             "save one array per input, named input_ids, attention_mask"):
        bind(x=ids.astype(np.float32), y=np.arange(N) % 2)


def test_bind_refuses_unlabelled_data_to_a_stage_that_trains():
    from edgehad.stages.finetune import Finetune

    ids, mask = tokens()
    model = Encoder()
    data = load_data({"input_ids": ids, "attention_mask": mask})  # in memory, no labels
    assert bind_data(data, model, model.example_inputs).val[1] is None
    with pytest.raises(UserInputError) as err:
        bind_data(data, model, model.example_inputs, [Finetune()])
    assert str(err.value) == ("finetune needs labelled data with one input: `data` <in memory> has no labels "
                              "(an array y); fine-tuning trains on its labels (pass `finetune_epochs=0` to skip it)")


def test_one_array_x_binds_to_a_one_input_model_whatever_its_name(tmp_path):
    class Net(nn.Module):
        def forward(self, images):
            return images.flatten(1)

    x = np.random.default_rng(0).random((10, 1, 2, 2)).astype(np.float64)
    np.savez(tmp_path / "x.npz", x=x)  # x without labels: named data, dtype kept until bound
    d = load_data(str(tmp_path / "x.npz"))
    assert d.input_names == ["x"] and d.train[0]["x"].dtype == np.float64 and not d.labelled
    bound = bind_data(d, Net(), (torch.zeros(1, 1, 2, 2),))
    assert isinstance(bound.val[0], np.ndarray) and bound.val[0].dtype == np.float32
    assert bound.val[0].shape == (2, 1, 2, 2)  # batch rows, as one array x is read everywhere
    assert fitting_samples((torch.zeros(1, 1, 2, 2),), bound, "val")[0].shape == (2, 1, 1, 2, 2)


def test_an_input_without_a_batch_dim_takes_whole_tensor_rows():
    """A recurrent state [2, 1, 128] (Silero VAD's) is no batch of rows: each sample is the whole tensor."""
    class Step(nn.Module):
        def forward(self, x, state):
            return x.sum() + state.sum()

    example = (torch.zeros(1, 4), torch.zeros(2, 1, 3))
    rng = np.random.default_rng(0)
    x, state = rng.random((10, 4), dtype=np.float32), rng.random((10, 2, 1, 3), dtype=np.float32)
    bound = bind_data(load_data({"x": x, "state": state}), Step(), example)
    samples = sample_inputs(example, bound, n=2)
    assert [a.shape for a in samples[1]] == [(1, 4), (2, 1, 3)]
    i = int(np.flatnonzero((x == samples[1][0]).all(1))[0])
    assert np.array_equal(samples[1][1], state[i])
    with pytest.raises(UserInputError, match="input state has samples of shape 1x3 but the model takes 2x1x3 per "
                                             "sample"):
        bind_data(load_data({"x": x, "state": state[:, 0]}), Step(), example)


def test_a_data_function_may_return_named_splits(tmp_path, monkeypatch):
    ids, mask = tokens()
    np.savez(tmp_path / "arrays.npz", ids=ids, mask=mask)
    (tmp_path / "tokdata.py").write_text(textwrap.dedent(f"""
        import numpy as np

        def splits():
            a = np.load({str(tmp_path / 'arrays.npz')!r})
            ids, mask = a["ids"], a["mask"]
            train = {{"input_ids": ids[:40], "attention_mask": mask[:40], "y": np.arange(40) % 3}}
            return train, ({{"input_ids": ids[40:], "attention_mask": mask[40:]}}, np.arange(10) % 3)
    """))
    d = load_data(f"{tmp_path / 'tokdata.py'}:splits")
    assert d.input_names == ["input_ids", "attention_mask"] and d.train[1].tolist()[:4] == [0, 1, 2, 0]
    assert d.val[0]["attention_mask"].dtype == mask.dtype and d.val[1].dtype == np.int64


def test_named_data_refuses_normalize_and_single_input_sampling(tmp_path):
    from edgehad.data import sample_inputs as data_samples

    ids, mask = tokens()
    with pytest.raises(UserInputError, match="`normalize` applies to one image input x, and data gives named inputs "
                                             r"\(input_ids, attention_mask\)"):
        load_data({"input_ids": ids, "attention_mask": mask}, normalize="0.5,0.25")
    with pytest.raises(UserInputError, match="give the arrays by input name with `inputs` FILE.npz"):
        data_samples(load_data({"input_ids": ids, "attention_mask": mask}), 4)


def test_convert_verifies_and_measures_accuracy_on_named_data(tmp_path):
    """The whole path: named data feeds verification (its samples) and the task metric (its labels)."""
    import edgehad
    from edgehad.export.verify import torch_outputs

    ids, mask = tokens()
    model = Encoder()
    # labels the original model gets right: its own argmax (the metric must then read 1.0 everywhere)
    logits = np.concatenate([o[0] for o in torch_outputs(model, [(ids[i:i + 1], mask[i:i + 1].astype(np.int64))
                                                                 for i in range(N)])])
    y = logits.argmax(1)
    np.savez(tmp_path / "t.npz", input_ids=ids, attention_mask=mask, y=y)
    report = edgehad.convert(model, data=str(tmp_path / "t.npz"), formats="onnx", out=tmp_path / "out", samples=5)
    assert report["samples"] == 5 and report["data"] == str(tmp_path / "t.npz")
    (metric,) = [s["task_metric"] for s in report["stages"] if "task_metric" in s]
    assert metric["measured"] and metric["samples"] == 10 and metric["original"] == 1.0 == metric["onnx_float"]
    (onnx,) = report["artifacts"]
    assert onnx["parity"]["passed"] and onnx["parity"]["samples"] == 5
    np.savez(tmp_path / "u.npz", input_ids=ids, attention_mask=mask)
    report = edgehad.convert(model, data=str(tmp_path / "u.npz"), formats="onnx", out=tmp_path / "out2", samples=3)
    (metric,) = [s["task_metric"] for s in report["stages"] if "task_metric" in s]
    assert metric == {"measured": False, "reason": "no labels"} and report["samples"] == 3
