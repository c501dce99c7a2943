"""Every command that reads a .pt2 refuses a pickle payload without running it (issue #13, defect 1)."""

from __future__ import annotations

import pytest

from tests.pt2_payloads import write_evil_pt2

COMMANDS = {
    "inspect": lambda f, out: ["inspect", f],
    "convert": lambda f, out: ["convert", f, "--out", out],
    "osr fit": lambda f, out: ["osr", "fit", f, "--data", "digits", "--out", f"{out}.npz"],
    "rewrite --explain": lambda f, out: ["rewrite", f, "--explain"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_command_refuses_pickled_inputs_of_a_pt2(cli, tmp_path, command):
    marker = tmp_path / "MARKER"
    evil = write_evil_pt2(tmp_path / "evil.pt2", "sample-inputs-torch-save", marker)
    out = tmp_path / "out"
    result = cli(*COMMANDS[command](str(evil), str(out)))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused without running them" in lines[0], lines
    assert not marker.exists()
    assert not out.exists() and not (tmp_path / "out.npz").exists()
