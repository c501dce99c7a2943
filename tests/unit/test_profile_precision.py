"""`profile --ep tensorrt --precision fp16` reaches the agent's --trt-fp16 (issue #15).

No GPU here: what can be checked is the chain up to the device, for real: the Job's agent command line,
the agent's own parser, and the CLI's refusal of fp16 without TensorRT (exit 2, before anything runs).
"""

from __future__ import annotations

import pytest

from edgehad.core.errors import UserInputError
from edgehad.profiling import agent
from edgehad.profiling.job import Job
from tests.conftest import run_cli


def test_job_passes_fp16_to_the_agent():
    args = Job(provider="tensorrt", precision="fp16").agent_args("m.onnx")
    assert args[args.index("--provider") + 1] == "tensorrt" and args.count("--trt-fp16") == 1
    assert "--trt-fp16" not in Job(provider="tensorrt").agent_args("m.onnx")  # fp32 is the default
    parsed = agent.parse_args(args)  # the agent reads what the Job wrote
    assert (parsed.provider, parsed.trt_fp16, parsed.model) == ("tensorrt", True, "m.onnx")
    assert agent.parse_args(Job(provider="tensorrt").agent_args("m.onnx")).trt_fp16 is False


@pytest.mark.parametrize("provider", ["cpu", "cuda"])
def test_fp16_needs_tensorrt(provider):
    with pytest.raises(UserInputError, match=rf"^`precision` fp16 is TensorRT's fp16 mode and needs `provider` "
                                             rf"tensorrt \(got {provider}\); for fp16 elsewhere convert the model "
                                             rf"with `quantize` fp16$"):
        Job(provider=provider, precision="fp16")
    with pytest.raises(UserInputError, match=r"^unknown `precision` 'int8': use one of fp32, fp16$"):
        Job(precision="int8")
    with pytest.raises(agent.AgentError, match="use it with --provider tensorrt"):
        agent.parse_args(["m.onnx", "--provider", provider, "--trt-fp16"])


def test_cli_refuses_fp16_without_tensorrt(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")  # never read: the settings are refused first
    r = run_cli("profile", model, "--precision", "fp16", "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("error: --precision fp16 is TensorRT's fp16 mode and needs --ep tensorrt (got cpu); "
                                "for fp16 elsewhere convert the model with --quantize fp16")
    r = run_cli("profile", model, "--precision", "fp8")
    assert r.returncode == 2 and "'fp8' is not one of 'fp32', 'fp16'" in r.stderr
