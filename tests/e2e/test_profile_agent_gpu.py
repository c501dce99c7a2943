"""The agent's NVIDIA GPU and Jetson paths: what runs on any machine, and the real thing where it exists.

On a machine without onnxruntime-gpu, tegrastats or nvidia-smi (CI), the agent must say exactly what is
missing; the measuring tests at the end run only on a real CUDA machine or a real Jetson (no stand-in
binaries: a fake tegrastats would prove nothing about a board).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgehad.profiling import agent, local
from tests.conftest import run_cli
from tests.e2e.test_cli_convert import assert_clean_error


def _available_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


HAS_CUDA = "CUDAExecutionProvider" in _available_providers() and shutil.which("nvidia-smi") is not None
HAS_TEGRASTATS = agent.find_tegrastats() is not None
HAS_NVMAP = agent.meminfo_mb("NvMapMemUsed") is not None


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    """A real two-node model (MatMul + Relu) written with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array((np.arange(12, dtype=np.float32) / 10).reshape(4, 3), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("gpu") / "tiny.onnx"
    onnx.save(model, path)
    return path


def run_agent(*args):
    proc = subprocess.run([sys.executable, str(local.AGENT), *map(str, args)], capture_output=True, text=True,
                          env=local.agent_env(), timeout=300)
    return proc.returncode, json.loads(proc.stdout)


# -- without the hardware: clear errors, honest None ---------------------------
@pytest.mark.skipif("CUDAExecutionProvider" in _available_providers(), reason="onnxruntime-gpu is installed here")
@pytest.mark.parametrize("provider, name", [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")])
def test_gpu_provider_without_onnxruntime_gpu(tiny_onnx, provider, name):
    code, doc = run_agent(tiny_onnx, "--provider", provider, "--runs", "1")
    assert code == 2 and set(doc) == {"error"}
    assert f"onnxruntime here has no {name}" in doc["error"]
    assert "install onnxruntime-gpu" in doc["error"] and "--provider cpu" in doc["error"]


@pytest.mark.skipif("CUDAExecutionProvider" in _available_providers(), reason="onnxruntime-gpu is installed here")
def test_cli_ep_cuda_is_one_clean_error(tiny_onnx):
    assert_clean_error(run_cli("profile", tiny_onnx, "--ep", "cuda", "--runs", "1"),
                       "no CUDAExecutionProvider (available: ")


@pytest.mark.skipif(HAS_TEGRASTATS, reason="this machine has tegrastats (a Jetson)")
def test_power_needs_tegrastats(tiny_onnx):
    code, doc = run_agent(tiny_onnx, "--power", "--runs", "1")
    assert code == 2
    assert doc["error"] == ("--power reads the power rails from tegrastats, which only NVIDIA Jetson boards have "
                            "(none on PATH or at /usr/bin/tegrastats); leave out --power")
    assert_clean_error(run_cli("profile", tiny_onnx, "--power", "--runs", "1"), "--power reads the power rails")


def test_trt_fp16_needs_tensorrt(tiny_onnx):
    code, doc = run_agent(tiny_onnx, "--trt-fp16", "--runs", "1")
    assert code == 2 and doc["error"] == "--trt-fp16 sets TensorRT's fp16 mode; use it with --provider tensorrt"


@pytest.mark.skipif(HAS_TEGRASTATS or HAS_NVMAP or HAS_CUDA, reason="NVIDIA hardware here")
def test_cpu_document_has_gpu_keys_set_to_none(tiny_onnx):
    code, doc = run_agent(tiny_onnx, "--runs", "3", "--warmup", "0")
    assert code == 0, doc
    assert doc["providers_used"] == ["CPUExecutionProvider"] and doc["provider_options"] is None
    for key in ("gpu_memory_mb", "gpus", "nvmap_mb", "tegrastats_lines", "tegrastats_interval_ms", "tegrastats_note"):
        assert key in doc and doc[key] is None, key
    assert doc["power_requested"] is False and "init_note" not in doc


# -- the helpers, on documented output formats ---------------------------------
def test_compute_app_memory_of_this_pid():
    # nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits: "pid, MiB" per process per GPU
    text = "4242, 1536\n777, 300\n4242, 512\n"
    assert agent.compute_app_memory_mb(text, 4242) == 2048.0
    assert agent.compute_app_memory_mb(text, 4243) is None
    assert agent.compute_app_memory_mb("4242, [N/A]\n", 4242) is None  # a driver that hides per-process memory
    assert agent.compute_app_memory_mb("", 4242) is None


def test_nvmap_from_a_jetson_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        7999620 kB\nMemFree:         5030604 kB\nMemAvailable:    6290040 kB\n"
                       "NvMapMemFree:      123904 kB\nNvMapMemUsed:      352256 kB\nCmaTotal:         524288 kB\n")
    assert agent.meminfo_mb("NvMapMemUsed", meminfo) == 344.0
    assert agent.meminfo_mb("NvMapMemFree", meminfo) == 121.0
    assert agent.meminfo_mb("Absent", meminfo) is None
    assert agent.meminfo_mb("NvMapMemUsed", tmp_path / "missing") is None


def test_a_silent_fallback_to_cpu_is_an_error():
    agent.check_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])  # no error
    with pytest.raises(agent.AgentError, match="could not start CUDAExecutionProvider here .the session fell back "
                                               "to CPUExecutionProvider.: check that the CUDA, cuDNN libraries"):
        agent.check_providers("cuda", ["CPUExecutionProvider"])
    with pytest.raises(agent.AgentError, match="CUDA, cuDNN and TensorRT libraries"):
        agent.check_providers("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_provider_lists():
    assert agent.provider_list("cpu") == ["CPUExecutionProvider"]
    assert agent.provider_list("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    (trt, trt_options), *rest = agent.provider_list("tensorrt", "/tmp/cache")
    assert trt == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert trt_options == {"trt_fp16_enable": False, "trt_engine_cache_enable": True,
                           "trt_engine_cache_path": "/tmp/cache"}


# -- on the real hardware ------------------------------------------------------
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu, an NVIDIA GPU and nvidia-smi")
def test_cuda_run_reports_the_gpu(tiny_onnx):
    code, doc = run_agent(tiny_onnx, "--provider", "cuda", "--runs", "20")
    assert code == 0, doc
    assert doc["provider"] == "cuda" and doc["providers_used"][0] == "CUDAExecutionProvider"
    assert doc["gpus"] and doc["gpus"][0]["memory_total_mb"] > 0
    assert doc["gpu_memory_mb"] is None or doc["gpu_memory_mb"] > 0  # None where nvidia-smi cannot see this pid
    assert doc["provider_options"]["device_id"] == "0"


@pytest.mark.skipif(not HAS_TEGRASTATS, reason="needs a Jetson (tegrastats)")
def test_jetson_run_returns_tegrastats_lines(tiny_onnx):
    from edgehad.profiling.tegrastats import summarize

    code, doc = run_agent(tiny_onnx, "--power", "--seconds", "1")
    assert code == 0, doc
    assert doc["tegrastats_interval_ms"] == 100 and doc["power_requested"] is True
    summary = summarize(doc["tegrastats_lines"])
    assert summary["samples"] >= 3 and summary["ram_used_mb"]["max"] > 0
    assert summary["power_total_mw"]["mean"] > 0
    assert doc["nvmap_mb"] is None or doc["nvmap_mb"]["before"] >= 0
