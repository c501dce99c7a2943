"""Calibration inputs for int8 static quantization, checked before the quantizer sees them."""

from __future__ import annotations

import numpy as np

from edgehad.core.errors import UserInputError


def calibration_inputs(example_inputs: tuple, data=None, n: int = 256, random: bool = False,
                       seed: int = 0) -> list[tuple]:
    """The first ``n`` samples of the train split, one at a time (batch 1, as exported): a tuple of one
    array per model input (named data, bound to the model by ``edgehad.core.pipeline.bind_data``, feeds
    a text encoder its token ids and mask as they are).

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

    columns = fitting_samples(example_inputs, data, "train")
    have = len(columns[0])
    if have < n:
        raise UserInputError(
            f"calibration asked for {n} samples but {data.spec} has {have} in its train split: "
            f"pass `calib_samples` {have} or more data"
        )
    columns = [c[:n] for c in columns]
    for x in columns:
        if x.dtype.kind != "f":
            continue  # integers (token ids, masks) are always finite
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise UserInputError(
                f"calibration data {data.spec} has NaN or Inf values in {int(bad.sum())} of {n} samples "
                f"(first: train sample {first}): clean the data"
            )
    dtypes = [t.numpy().dtype for t in example_inputs]
    return [tuple(c[i].astype(d) for c, d in zip(columns, dtypes)) for i in range(n)]
