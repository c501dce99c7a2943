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
