"""Calibration inputs for int8 static quantization, checked before the quantizer sees them."""

from __future__ import annotations

import numpy as np

from edgehad.core.errors import UserInputError


def calibration_inputs(example_inputs: tuple, data=None, n: int = 256, random: bool = False,
                       seed: int = 0) -> list[tuple]:
    """The first ``n`` samples of the train split, one at a time (batch 1, as exported).

    Without data, only an explicit ``random=True`` is allowed (seeded inputs with
    the example's mean and spread): ranges from random inputs rarely match real
    ones, so the report says so loudly.
    """
    if n < 1:
        raise UserInputError(f"`calib_samples` must be at least 1, got {n}")
    if data is None:
        if not random:
            raise UserInputError(
                "int8 quantization needs calibration data: pass `data` SPEC, or `calib` random to calibrate "
                "on random inputs (ranges will not match real data)"
            )
        from edgehad.core.pipeline import sample_inputs

        return sample_inputs(example_inputs, None, n=n, seed=seed + 1)
    from edgehad.core.pipeline import fitting_samples

    x = fitting_samples(example_inputs, data, "train")
    if len(x) < n:
        raise UserInputError(
            f"calibration asked for {n} samples but {data.spec} has {len(x)} in its train split: "
            f"pass `calib_samples` {len(x)} or more data"
        )
    x = x[:n]
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise UserInputError(
            f"calibration data {data.spec} has NaN or Inf values in {int(bad.sum())} of {n} samples "
            f"(first: train sample {first}): clean the data"
        )
    dtype = example_inputs[0].numpy().dtype
    return [(x[i:i + 1].astype(dtype),) for i in range(n)]
