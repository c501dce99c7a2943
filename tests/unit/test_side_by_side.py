"""edgehad.export.side_by_side: the files timed side by side are the files a user deploys (NHWC TFLite)."""

from __future__ import annotations

import numpy as np
import torch

from edgehad.export.side_by_side import export_sessions, interleaved_medians


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def test_tflite_files_are_written_channels_last_and_fed_torch_layout_arrays(tmp_path):
    from edgehad.inspection import inspect_file
    from edgehad.runtime import read_layout

    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.rand(1, 3, 16, 16)
    paths, sessions = export_sessions({"a": net}, (x,), "tflite", tmp_path, threads=1)
    assert "TRANSPOSE" not in inspect_file(paths["a"])["ops"]
    assert read_layout(paths["a"]) == {"inputs": ["nhwc"], "outputs": ["nhwc"]}
    (out,) = sessions["a"].run([x.numpy()])
    np.testing.assert_allclose(out, net(x).detach().numpy(), atol=1e-5)  # torch's NCHW order back
    timed = interleaved_medians(sessions, [x.numpy()], rounds=3, per_round=2, warmup=1)
    assert timed["a"][1] == 6 and timed["a"][0] > 0


def test_the_nchw_layout_is_still_there_for_who_asks(tmp_path):
    from edgehad.inspection import inspect_file

    net = _Net().eval()
    paths, _ = export_sessions({"a": net}, (torch.rand(1, 3, 16, 16),), "tflite", tmp_path, threads=1, layout="nchw")
    assert "TRANSPOSE" in inspect_file(paths["a"])["ops"]
