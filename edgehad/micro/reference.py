"""LiteRT's outputs for micro's samples, meant to be a child process:
``python -m edgehad.micro.reference MODEL INPUTS OUT``.

Why a child: the file may be corrupt, and LiteRT's C++ loader can crash the
whole process on a malformed flatbuffer (the flatbuffer reader of
edgehad.inspection checks offsets and lengths, not every value a kernel trusts).
In a child, a crash or a refusal is an answer about the file, and a model that
loops is stopped by the child's time limit (edgehad.core.children).

    MODEL   the .tflite file
    INPUTS  the .npz the TFLM probe read (``in_0 ..``, ``n_outputs``; see edgehad.micro.probe)
    OUT     .npz written on success: ``ref_0 ..`` (LiteRT's reference kernels) and ``default_0 ..``
            (its default kernels, XNNPACK), each ``[samples, *output shape]``

Exit 0: OUT written. Exit 3: LiteRT refused the model or a sample (its message on stderr).
"""

from __future__ import annotations

import os
import sys

import numpy as np

EXIT_LITERT_ERROR = 3
EXIT_USAGE = 2


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m edgehad.micro.reference MODEL INPUTS.npz OUT.npz", file=sys.stderr)
        return EXIT_USAGE
    from edgehad.micro.samples import graph, litert_outputs

    model, inputs_path, out_path = argv
    with np.load(inputs_path) as data:
        inputs = [data[f"in_{k}"] for k in range(sum(1 for k in data.files if k.startswith("in_")))]
    _, sub = graph(model)
    arrays = {}
    for prefix, reference in (("ref", True), ("default", False)):
        try:
            outs = litert_outputs(model, sub, inputs, reference=reference)
        except (RuntimeError, ValueError, MemoryError) as exc:
            kernels = "reference" if reference else "default"
            print(f"litert error ({kernels} kernels): {' '.join(str(exc).split())}", file=sys.stderr)
            return EXIT_LITERT_ERROR
        arrays.update({f"{prefix}_{j}": o for j, o in enumerate(outs)})
    tmp = f"{out_path}.tmp.npz"  # np.savez appends .npz unless the name already ends with it
    np.savez(tmp, **arrays)
    os.replace(tmp, out_path)
    return 0


def litert_reference(model, inputs_npz, out_npz, timeout: float) -> str | None:
    """Run this module on ``model`` in a child (edgehad.core.children); None when ``out_npz`` was written,
    else one line saying why LiteRT could not run it (its error, the signal that killed it, the time limit)."""
    import subprocess

    from edgehad.core.children import run_child
    from edgehad.micro.arena import child_env, signal_name

    cmd = [sys.executable, "-m", "edgehad.micro.reference", str(model), str(inputs_npz), str(out_npz)]
    try:
        proc = run_child(cmd, timeout=timeout, env=child_env())
    except subprocess.TimeoutExpired:
        return f"LiteRT did not finish in {timeout:g} s"
    if proc.returncode == 0 and os.path.isfile(out_npz):
        return None
    if proc.returncode < 0:
        return f"LiteRT crashed with {signal_name(proc.returncode)}"
    said = [ln.strip() for ln in proc.stderr.splitlines() if ln.startswith("litert error")]
    lines = said or [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()][-1:]
    return (lines[0] if lines else f"LiteRT exited with code {proc.returncode}")[:300]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
