"""Shared fixtures: small real models written to files, and a real CLI subprocess runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TINY_MODEL = textwrap.dedent('''
    import torch

    class Net(torch.nn.Module):
        """A small conv net for 8x8 single-channel inputs (the digits shape)."""

        def __init__(self, width=8, classes=10):
            super().__init__()
            self.body = torch.nn.Sequential(
                torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Flatten(), torch.nn.Linear(width * 64, classes))
            self.example_inputs = (torch.randn(1, 1, 8, 8),)

        def forward(self, x):
            return self.body(x)

    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x)

    def net(width=8, classes=10):
        torch.manual_seed(0)
        return Net(width, classes)

    def no_inputs():
        return torch.nn.Linear(4, 2)

    def broken():
        raise ValueError("the factory is broken on purpose")

    def not_a_module():
        return 42

    class Dead(torch.nn.Module):
        """A branch whose conv has zero weights: its activation is constant during calibration."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.dead = torch.nn.Conv2d(4, 4, 1)
            torch.nn.init.zeros_(self.dead.weight)
            torch.nn.init.zeros_(self.dead.bias)
            self.fc = torch.nn.Linear(4 * 64, 10)
            self.example_inputs = (torch.rand(1, 1, 8, 8),)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc((y + self.dead(y)).flatten(1))

    def dead():
        torch.manual_seed(0)
        return Dead()

    def unsupported():
        torch.manual_seed(0)
        m = Net()
        m.body.append(Odd())
        return m
''')


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.py"
    path.write_text(TINY_MODEL)
    return path


def run_cli(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    """Run ``python -m edgehad ARGS`` for real and capture stdout and stderr separately."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "edgehad", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


# The fast lane, ``pytest -m "not slow"`` (<= 4 min with -n 2 on 2 cores), is the unit tests plus the
# few end-to-end tests named here: every test in tests/e2e starts real CLI processes (seconds each) or
# converts models (tens of seconds), so the e2e folder is marked slow except these picks, chosen so that
# every command and every module of edgehad still runs at least once. The full run (README, CI) runs all.
FAST_E2E = {
    "test_cli_convert.py": {"test_json_stdout_is_exactly_one_document", "test_files_and_parity"},
    "test_cli_inspect.py": {"test_inspect_json_of_exported_files", "test_missing_and_unsupported_files"},
    "test_file_inputs.py": {"test_inspect_names_every_symbolic_dim"},
    "test_cli_targets.py": {"test_json_lists_every_target"},
    "test_cli_errors.py": {"test_click_usage_errors_are_one_line", "test_json_output_is_strict_json"},
    "test_profile_values.py": {"test_in_range_values_still_run", "test_python_api_gets_the_same_check"},
    "test_micro_bad_input.py": {"test_the_unmutated_model_passes"},
    "test_bundle_safety.py": {"test_clashing_name_exit_2[NULL-",
                              "test_onnx_external_data_travels_with_the_model[model"},
    "test_osr_head.py": {"test_head_algebra_on_fixed_tensors",
                         "test_head_refuses_a_model_that_does_more_after_its_linear"},
    "test_quantize_int8.py": {"test_keep_float_unknown_layer"},
    "test_prune_latency.py": {"test_bad_combinations_are_one_line_exit_2[elements"},
    "test_osr_cli.py": {"test_fit_text"},
    "test_safety_pt2.py": {"test_command_refuses_pickled_inputs_of_a_pt2"},
    "test_recipe_values.py": {"test_a_recipe_that_is_not_utf8_is_exit_2"},
    "test_data_checks.py": {"test_data_function_that_exits"},
    "test_children.py": {"test_time_limit_kills_the_child_and_its_grandchildren", "test_run_child_output_and_refusals"},
    "test_profile_agent_gpu.py": {"test_provider_lists", "test_compute_app_memory_of_this_pid",
                                  "test_nvmap_from_a_jetson_meminfo", "test_a_silent_fallback_to_cpu_is_an_error"},
}


def _picked(item, names: set[str]) -> bool:
    """A name without brackets picks every parametrization; ``test_x[id-`` picks the ids it begins."""
    return item.originalname in names or any(item.name.startswith(n) for n in names if "[" in n)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if path.parent.name == "e2e" and not _picked(item, FAST_E2E.get(path.name, set())):
            item.add_marker(pytest.mark.slow)


# Conversions shared by the whole session (each xdist worker builds its own once). Tests only read
# these folders; a test that writes into one must copy it first.
@pytest.fixture(scope="session")
def digits_float_out(tmp_path_factory) -> Path:
    """zoo:digits_cnn converted float (model.onnx, model.tflite), verified on real digits."""
    import edgehad

    out = tmp_path_factory.mktemp("digits") / "float"
    edgehad.convert("zoo:digits_cnn", data="digits", out=out)
    return out


@pytest.fixture(scope="session")
def digits_files(digits_float_out, tmp_path_factory) -> dict[str, Path]:
    """{variant: folder} for digits_cnn: float, int8 (float I/O), int8io (int8 I/O)."""
    import edgehad

    root = tmp_path_factory.mktemp("digits-int8")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    edgehad.convert("zoo:digits_cnn", data="digits", quantize="int8", out=root / "int8")
    edgehad.convert("zoo:digits_cnn", data="digits", quantize="int8", int8_io=True, out=root / "int8io")
    return {"float": digits_float_out, "int8": root / "int8", "int8io": root / "int8io"}


# The reliability lane's tally (tests/reliability/conftest.py records it per test). Here, not in
# tests/reliability/, because under pytest-xdist the controller loads only the root conftest.
def pytest_terminal_summary(terminalreporter):
    totals = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":  # it holds what the whole test recorded
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "reliability":
                    d = json.loads(value)
                    t = totals.setdefault(d["kind"], [0, 0])
                    t[0] += d["tried"]
                    t[1] += d["clean"]
    if totals:
        parts = ", ".join(f"{kind}: {t[0]} tried, {t[1]} handled cleanly" for kind, t in sorted(totals.items()))
        terminalreporter.write_line(f"reliability lane: {parts}")
