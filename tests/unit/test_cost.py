"""MACs and parameter counts against numbers worked out by hand."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.cost import count_forward, count_macs, count_params


class MatMul(nn.Module):
    def forward(self, a, b):
        return a @ b


class Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class Gate(nn.Module):
    """A Hadamard gate: element-wise, so 0 MACs."""

    def forward(self, x):
        return x * torch.sigmoid(x)


@pytest.mark.parametrize(
    "module, x, macs",
    [
        # out 8 x 16 x 16 = 2048 elements, each 3 x 3 x 3 = 27 MACs
        (nn.Conv2d(3, 8, 3, padding=1), torch.randn(1, 3, 16, 16), 2048 * 27),
        # depthwise: each of the 2048 outputs sees one channel, 3 x 3 = 9 MACs
        (nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.randn(1, 8, 16, 16), 2048 * 9),
        # grouped: 16 x 10 x 10 outputs, each sees 8 / 4 = 2 channels x 9
        (nn.Conv2d(8, 16, 3, padding=1, groups=4), torch.randn(1, 8, 10, 10), 1600 * 18),
        # stride 2 halves each side: 8 x 8 x 8 outputs x 27, batch 2
        (nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.randn(2, 3, 16, 16), 2 * 512 * 27),
        # transposed: every input element (4 x 5 x 5) spreads over 6 x 3 x 3 outputs
        (nn.ConvTranspose2d(4, 6, 3, stride=2), torch.randn(1, 4, 5, 5), 100 * 54),
        (nn.Conv1d(4, 6, 3), torch.randn(1, 4, 10), 6 * 8 * 12),
        (nn.Linear(32, 10), torch.randn(4, 32), 4 * 10 * 32),
        (nn.Linear(32, 10, bias=False), torch.randn(2, 5, 32), 10 * 10 * 32),
        (Gate(), torch.randn(1, 8, 16, 16), 0),
    ],
    ids=["conv", "depthwise", "grouped", "strided-batch2", "transposed", "conv1d", "linear", "linear-3d", "gate"],
)
def test_macs_by_hand(module, x, macs):
    assert count_macs(module, x) == macs


@pytest.mark.parametrize(
    "a, b, macs",
    [
        (torch.randn(3, 4, 5), torch.randn(3, 5, 6), 3 * 4 * 6 * 5),  # bmm
        (torch.randn(2, 3, 4, 5), torch.randn(5, 6), 2 * 3 * 4 * 6 * 5),  # broadcast
        (torch.randn(4, 5), torch.randn(5), 4 * 5),  # matrix-vector
        (torch.randn(5), torch.randn(5), 5),  # dot
    ],
    ids=["bmm", "broadcast", "mv", "dot"],
)
def test_matmul_macs(a, b, macs):
    assert count_macs(MatMul(), (a, b)) == macs


def test_attention_counts_both_matmuls():
    # CPU runs the flash kernel, which torch's own counter does not know:
    # q k^T is b*h*s*l*d and (scores) v is b*h*s*l*d_v
    q, k, v = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 4)
    assert count_macs(Attention(), (q, k, v)) == 2 * 2 * 5 * 7 * (8 + 4)


def test_multihead_attention_fast_path_is_counted_and_restored():
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    before = torch.backends.mha.get_fastpath_enabled()
    # q, k, v and output projections: 4 x (2*5 tokens x 16 x 16); scores and mix: 2 x (2*2 heads x 5 x 5 x 8)
    assert count_macs(mha, (x, x, x)) == 4 * 10 * 256 + 2 * 4 * 5 * 5 * 8
    assert torch.backends.mha.get_fastpath_enabled() == before


def test_keyword_inputs():
    assert count_macs(MatMul(), {"a": torch.randn(4, 5), "b": torch.randn(5, 6)}) == 120


def test_count_forward_records_ops_and_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).train()
    stats = model[1].running_mean.clone()
    fwd = count_forward(model, torch.randn(2, 3, 8, 8))
    assert fwd.macs == 2 * 4 * 6 * 6 * 27
    assert fwd.ops["aten.convolution"] == 1
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model[1].running_mean, stats)  # ran in eval mode: no statistics update
    assert [tuple(t.shape) for t in fwd.outputs] == [(2, 4, 6, 6)]
    assert [name for name, _ in fwd.inputs] == ["input"]


def test_params():
    assert count_params(nn.Conv2d(3, 8, 3)) == 8 * 27 + 8
    assert count_params(nn.Conv2d(8, 8, 3, groups=8, bias=False)) == 8 * 9
    assert count_params(nn.Linear(32, 10)) == 330
    # BatchNorm: weight and bias only; running statistics are buffers, not weights
    assert count_params(nn.BatchNorm2d(8)) == 16
    shared = nn.Linear(4, 4)
    assert count_params(nn.Sequential(shared, nn.ReLU(), shared)) == 20


def test_errors():
    with pytest.raises(UserInputError, match="needs a torch.nn.Module"):
        count_params("model.pt")
    with pytest.raises(UserInputError, match=r"example inputs do not fit the model \(RuntimeError"):
        count_macs(nn.Linear(32, 10), torch.randn(4, 31))
    with pytest.raises(UserInputError, match="must be a tensor, a tuple of tensors or a dict"):
        count_macs(nn.Linear(32, 10), "x.npy")
