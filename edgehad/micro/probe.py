"""One TFLite Micro run, meant to be a child process: ``python -m edgehad.micro.probe MODEL ARENA INPUTS OUT``.

Why a child: with a too-small tensor arena TFLM prints "Failed to allocate
tail memory" and, depending on where the allocation failed, either raises
(RuntimeError "TFLM failed to allocate tensors") or crashes the whole process
with SIGSEGV (both measured on the 2026 tflite-micro wheel). Only a separate
process makes "does not fit" an answer rather than the end of edgehad.

    MODEL   the .tflite file
    ARENA   tensor arena size, bytes
    INPUTS  .npz with ``in_0 .. in_{k-1}`` (each ``[samples, *input shape]``, the
            input's own dtype) and ``n_outputs`` (a scalar)
    OUT     .npz written on success: ``out_0 .. out_{m-1}``, each ``[samples, *output shape]``

Exit 0: every sample ran and OUT was written. Exit 3: TFLM reported an error
(its message is on stderr). A signal (negative return code to the parent): it
crashed. TFLM's RecordingMicroAllocator summary ("Arena allocation total N
bytes") is printed to stderr after a successful run.

Depends on numpy and tflite_micro only, so it starts fast and imports nothing
of edgehad beyond this package's empty ``__init__``.
"""

from __future__ import annotations

import os
import sys

import numpy as np

EXIT_TFLM_ERROR = 3
EXIT_USAGE = 2


def run(model: str, arena_bytes: int, inputs: list, n_outputs: int) -> list:
    """Run every sample under TFLM; return one ``[samples, ...]`` array per output."""
    from tflite_micro.python.tflite_micro import runtime

    interp = runtime.Interpreter.from_file(model, arena_size=arena_bytes)
    n = inputs[0].shape[0] if inputs else 1
    outputs = [[] for _ in range(n_outputs)]
    for s in range(n):
        interp.reset()  # each sample from the initial state, as a fresh LiteRT interpreter would see it
        for k, arr in enumerate(inputs):
            interp.set_input(np.ascontiguousarray(arr[s]), k)
        interp.invoke()
        for j in range(n_outputs):
            outputs[j].append(np.array(interp.get_output(j), copy=True))
    sys.stderr.flush()
    interp.print_allocations()  # C++ writes straight to fd 2; the parent reads the total from it
    return [np.stack(o) for o in outputs]


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m edgehad.micro.probe MODEL ARENA_BYTES INPUTS.npz OUT.npz", file=sys.stderr)
        return EXIT_USAGE
    model, arena, inputs_path, out_path = argv
    with np.load(inputs_path) as data:
        n_in = sum(1 for k in data.files if k.startswith("in_"))
        inputs = [data[f"in_{k}"] for k in range(n_in)]
        n_outputs = int(data["n_outputs"])
    try:
        outputs = run(model, int(arena), inputs, n_outputs)
    except (RuntimeError, ValueError) as exc:
        print(f"tflm error: {exc}", file=sys.stderr)
        return EXIT_TFLM_ERROR
    except MemoryError:  # the host could not give the arena itself: it does not fit here, whatever the model
        print(f"unable to allocate an arena of {int(arena)} bytes on this host (MemoryError)", file=sys.stderr)
        return EXIT_TFLM_ERROR
    tmp = f"{out_path}.tmp.npz"  # np.savez appends .npz unless the name already ends with it
    np.savez(tmp, **{f"out_{j}": o for j, o in enumerate(outputs)})
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
