"""Mutated model, weights, stats and data files through every reader edgehad has.

Each seed file (conftest.py) is mutated deterministically (mutate.py) and the
mutants go, in bulk, through the library function a command calls, in a worker
process that bounds each case (harness.py); a smaller sample goes through the
real CLI. What must hold for every mutant:

- in-process: the reader returns, or raises UserInputError (exit 2), or another
  EdgehadError that is not an "internal error" (exit 1: e.g. TFLM has no kernel
  for an op a flipped byte now names); never another exception, never a crash
  of the process, never a hang;
- through the CLI: exit 0, 1 or 2; on 1 or 2 exactly one ``error:`` line on
  stderr, never "internal error", never a traceback.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.reliability.harness import CLEAN, describe, run_batch, summary, write_mutants
from tests.reliability.mutate import mutants, onnx_cases

pytestmark = [pytest.mark.reliability, pytest.mark.slow]  # a lane of its own, not the fast lane

KIND = {".tflite": "flatbuffer", ".pt2": "zip", ".npz": "zip", ".safetensors": "safetensors"}

# (op, seed, how many mutants, seconds per case). The cheap readers take hundreds; the ones that
# start child processes (micro, profile, bundle) take a sample.
IN_PROCESS = [
    ("inspect", "float.onnx", 150, 20),
    ("inspect", "float.tflite", 150, 20),
    ("inspect", "int8.tflite", 150, 20),
    ("session", "float.onnx", 80, 20),
    ("session", "float.tflite", 80, 20),
    ("session", "int8.tflite", 80, 20),
    ("osr-eval", "float.onnx", 12, 30),
    ("osr-eval", "int8.tflite", 12, 30),
    ("micro", "int8.tflite", 16, 60),
    ("micro", "float.tflite", 8, 60),
    ("profile", "float.onnx", 8, 60),
    ("profile", "int8.tflite", 8, 60),
    ("bundle", "int8.tflite", 8, 90),
    ("bundle", "float.onnx", 8, 30),
    ("pt2", "model.pt2", 40, 30),
    ("weights", "weights.safetensors", 60, 20),
    ("stats", "stats.npz", 80, 20),
    ("data", "data.npz", 60, 20),
]


def _mutant_files(seeds, seed: str, n: int, folder):
    path = seeds[seed]
    stem, suffix = path.stem, path.suffix
    # one seed per (file, count): the same mutants for every op that reads that file
    made = mutants(path.read_bytes(), n, seed=sum(map(ord, seed)), kind=KIND.get(suffix, "bytes"))
    if suffix == ".onnx" and n >= 50:  # the bulk runs also get the hand-made structural cases
        made += onnx_cases(path.read_bytes())
    return write_mutants(folder, stem, suffix, made)


@pytest.mark.parametrize("op,seed,n,limit", IN_PROCESS, ids=[f"{o}-{s}" for o, s, _, _ in IN_PROCESS])
def test_mutants_in_process(op, seed, n, limit, seeds, tmp_path, tally):
    paths = _mutant_files(seeds, seed, n, tmp_path / "mutants")
    # edgehad.runtime raises plain exceptions on purpose (it ships alone in bundles); only there is that clean
    accept = CLEAN | {"raised"} if op == "session" else CLEAN
    # the unmutated seed first: the reader must accept it, or every refusal below proves nothing
    results = run_batch(op, [seeds[seed], *paths], case_limit=limit, extra={"model_file": str(seeds["tiny.py"])},
                        cwd=tmp_path)
    baseline, results = results[0], results[1:]
    assert baseline.outcome == "ok", f"{op} does not accept the unmutated {seed}: {baseline.message}"
    clean, bad = summary(results, accept)
    tally(len(results), clean)
    assert not bad, f"{len(bad)} of {len(results)} mutants of {seed} not handled cleanly by {op}:\n{describe(bad)}"


# (command line, "{file}" standing for the mutant, seed, how many mutants) through `python -m edgehad`
DIGITS = ["--known", "digits?classes=0-5", "--unknown", "digits?classes=6-9"]
CLI = [
    (["inspect", "{file}"], "float.onnx", 4),
    (["inspect", "{file}"], "int8.tflite", 6),
    (["inspect", "{file}"], "model.pt2", 2),
    (["micro", "{file}", "--samples", "2"], "int8.tflite", 4),
    (["profile", "{file}", "--runs", "1", "--warmup", "0"], "float.onnx", 3),
    (["profile", "{file}", "--runs", "1", "--warmup", "0"], "float.tflite", 3),
    (["bundle", "{file}", "--out", "{tmp}/bundle", "--force"], "int8.tflite", 3),
    (["osr", "eval", "{file}", *DIGITS], "float.onnx", 3),
    (["osr", "eval", "{model}:net", *DIGITS, "--stats", "{file}"], "stats.npz", 4),
    (["inspect", "{model}:net", "--weights", "{file}"], "weights.safetensors", 2),
]


def check_cli_result(result) -> str | None:
    """None if the process ended cleanly, else what was wrong."""
    if result.returncode not in (0, 1, 2):
        return f"exit {result.returncode}"
    if "Traceback" in result.stderr:
        return "traceback on stderr"
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    if "internal error" in result.stderr:
        return next((ln for ln in errors if "internal error" in ln), "internal error")
    if result.returncode != 0 and len(errors) != 1:
        return f"exit {result.returncode} with {len(errors)} error: lines"
    return None


@pytest.mark.parametrize("args,seed,n", CLI, ids=[f"{a[0]}-{s}" for a, s, _ in CLI])
def test_mutants_through_cli(args, seed, n, seeds, tmp_path, tally):
    # the mutants after the truncations: the sample mixes one cut file with byte and structure mutations
    paths = _mutant_files(seeds, seed, n + 10, tmp_path / "mutants")
    paths = [paths[3]] + (paths[-(n - 1):] if n > 1 else [])
    bad = []
    for path in paths:
        fill = {"tmp": tmp_path, "model": seeds["tiny.py"], "file": path}
        argv = [a.format(**fill) for a in args]
        try:
            result = run_cli(*argv, cwd=tmp_path, timeout=120)
        except Exception as exc:  # subprocess.TimeoutExpired: a hang
            bad.append(f"{path.name}: {type(exc).__name__}")
            continue
        problem = check_cli_result(result)
        if problem:
            bad.append(f"{path.name}: edgehad {' '.join(argv[:2])} ...: {problem}")
    tally(len(paths), len(paths) - len(bad), kind="cli")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("seed", ["float.onnx", "int8.tflite", "model.pt2", "stats.npz", "weights.safetensors"])
def test_mutants_are_deterministic(seed, seeds):
    """The same seed gives the same mutants on every run (a failure names a file anyone can remake)."""
    data = seeds[seed].read_bytes()
    kind = KIND.get(seeds[seed].suffix, "bytes")
    first, again = mutants(data, 40, seed=7, kind=kind), mutants(data, 40, seed=7, kind=kind)
    assert first == again
    assert all(m != data for _, m in first) and len({m for _, m in first}) > 30
