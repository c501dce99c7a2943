"""Open-set recognition: COSTARR and baseline "is this input known?" scores, and their metrics.

- ``features``: find the final Linear of a classifier and read its input (the
  penultimate features f) and output (the logits z);
- ``stats``: fit the COSTARR statistics (z_min, z_max, mu_c, eta_c) on the
  correctly classified training samples, save/load them as ``.npz`` with a
  fingerprint of the model they were fitted on;
- ``scores``: COSTARR (Rabinowitz, Cruz, Scheirer, Boult, ICCV 2025), MSP,
  MaxLogit, Energy and the pre-only / post-only ablations, all "higher = known";
- ``metrics``: AUROC, FPR at 95% TPR, OSCR / AUOSCR (Dhamija, Günther, Boult,
  NeurIPS 2018);
- ``plot``: OSCR curves of several scores as an SVG file (edgehad.plots).

Modules are imported on use: ``edgehad.osr`` itself imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

FILE_SUFFIXES = (".onnx", ".tflite")


def _check_labelled(spec: str) -> None:
    """``osr fit`` needs labels: an .npz with inputs but no label arrays says so plainly."""
    if not spec.endswith(".npz") or not Path(spec).is_file():
        return  # other specs: load_data's own errors apply
    import numpy as np

    try:
        with np.load(spec, allow_pickle=False) as archive:
            names = set(archive.files)
    except Exception:
        return  # unreadable: load_data says why
    if ({"x", "x_train"} & names) and not ({"y", "y_train"} & names):
        raise _error(f"osr fit needs labels: {spec} holds inputs ({', '.join(sorted(names))}) but no y / y_train array")


def _error(message: str):
    from edgehad.core.errors import UserInputError

    return UserInputError(message)


def fit(model: str, data: str, out, *, classifier: str | None = None, normalize=None, model_args=None,
        weights=None, input_shape=None, warn=None) -> dict:
    """Fit COSTARR statistics of MODEL on the train split of ``data``; write them to ``out`` (.npz).

    Returns a summary dict (the ``osr fit --json`` document): ``out``,
    ``classifier``, ``features`` (D), ``classes`` (C), ``samples`` (train
    inputs), ``correct`` (those fitted on), ``train_accuracy``, ``counts``
    (correct per class), ``excluded`` (classes without a correct sample),
    ``z_min``, ``z_max``, ``fingerprint``. The file also records the data source
    and its known classes (``edgehad.osr.classes``), for ``evaluate``'s check.
    """
    import numpy as np

    from edgehad.data import load_data
    from edgehad.loading import load_model
    from edgehad.osr.stats import fit_stats, save_stats

    if str(model).endswith(FILE_SUFFIXES):
        raise _error(f"osr fit needs the PyTorch model (a MODEL spec such as zoo:NAME or file.py:factory), "
                     f"not the exported file {model}: the features f are not outputs of the file")
    from edgehad.core.files import check_writable

    check_writable(out, "`out`", folder=False)  # before the model loads: a bad path costs nothing
    _check_labelled(data)
    loaded = load_model(model, model_args=model_args, weights=weights, input_shapes=input_shape)
    splits = load_data(data, normalize=normalize)
    x, y = splits.train
    stats = fit_stats(loaded.module, x, y, classifier=classifier, warn=warn)
    from edgehad.osr.classes import source_labels, source_of

    if source_of(splits):  # data in memory has no source to compare with: nothing recorded
        stats.update(fit_source=source_of(splits), fit_classes=source_labels(splits, np.flatnonzero(stats["known"])))
    save_stats(out, stats)
    C, D = stats["mu"].shape
    return {
        "out": str(out), "model": model, "data": data, "classifier": stats["classifier"], "features": int(D),
        "classes": int(C), "samples": int(len(y)), "correct": stats["samples"],
        "train_accuracy": stats["samples"] / len(y), "counts": stats["counts"].tolist(),
        "excluded": [int(c) for c in np.flatnonzero(~stats["known"])],
        "z_min": stats["z_min"], "z_max": stats["z_max"], "fingerprint": stats["fingerprint"],
    }


def _torch_outputs(loaded, stats: dict, stats_path: str, x):
    """Scores of every kind for inputs ``x`` from the PyTorch model and its fitted stats."""
    from edgehad.osr.features import classifier_weight, penultimate
    from edgehad.osr.scores import all_scores
    from edgehad.osr.stats import check_stats

    name, linear = check_stats(stats, loaded.module, path=stats_path)
    f, z = penultimate(loaded.module, name, x)
    return z, all_scores(f, z, classifier_weight(linear), stats)


def _file_outputs(session, path: str, x):
    """Logits and the file's own ``known_score`` output for inputs ``x``, one sample at a time if batch is 1."""
    import numpy as np

    from edgehad.osr.scores import all_scores

    outs = session.outputs
    score_i = next((i for i, o in enumerate(outs) if "known_score" in str(o["name"])), None)
    if score_i is None and len(outs) == 2:  # TFLite names outputs output_0, output_1: go by shape
        sizes = [int(np.prod([d for d in o["shape"][1:] if isinstance(d, int) and d > 0] or [1])) for o in outs]
        score_i = 1 if sizes[1] == 1 else 0 if sizes[0] == 1 else None
    if len(outs) > 2 or (len(outs) == 2 and score_i is None):
        raise _error(f"{path} has outputs {[o['name'] for o in outs]}; osr eval expects (logits) or "
                     "(logits, known_score), as a conversion with `osr` writes them")
    logit_i = 0 if score_i != 0 else 1
    if len(outs) == 1:
        logit_i = 0
    batch_dim = session.inputs[0]["shape"][0] if session.inputs[0]["shape"] else 1
    step = 1 if batch_dim == 1 else 256
    zs, ks = [], []
    for i in range(0, len(x), step):
        try:
            res = session.run([np.ascontiguousarray(x[i:i + step], dtype=np.float32)])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise _error(f"inputs of shape {list(x.shape[1:])} do not fit {path} ({first[:200]}): check the data spec") from None
        zs.append(np.asarray(res[logit_i], dtype=np.float64).reshape(len(x[i:i + step]), -1))
        if score_i is not None:
            ks.append(np.asarray(res[score_i], dtype=np.float64).reshape(-1))
    z = np.concatenate(zs)
    scores = all_scores(None, z, None, None)
    if ks:
        scores = {"costarr": np.concatenate(ks), **scores}
    return z, scores


def evaluate(model: str, known: str, unknown: str, *, stats: str | None = None, normalize=None, split: str = "val",
             plot=None, model_args=None, weights=None, input_shape=None, warn=None) -> dict:
    """Score the ``split`` of ``known`` (labels = the model's classes) and of ``unknown``; compute the metrics.

    MODEL is a MODEL spec (needs ``stats``) or an exported ``.onnx``/``.tflite``
    with outputs (logits, known_score): there COSTARR is the file's own
    ``known_score``, MSP/MaxLogit/Energy come from its logits, and pre-only /
    post-only are not available (None). Returns the ``osr eval --json``
    document: ``model``, ``source`` (torch/onnx/tflite), ``stats``, ``split``,
    ``known`` {spec, samples, accuracy}, ``unknown`` {spec, samples},
    ``scores`` {name: {auroc, fpr95, auoscr} or None}, ``plot``.

    ``warn`` (default ``warnings.warn``) receives a line when classes of the unknown
    data were known in the fit of ``stats`` (``edgehad.osr.classes.unknowns_in_fit``).
    """
    from edgehad.data import load_data
    from edgehad.osr.metrics import evaluate as metric_table, oscr
    from edgehad.osr.scores import SCORES

    if split not in ("train", "val"):
        raise _error(f"unknown split {split!r}; use 'train' or 'val'")
    if plot:
        from edgehad.osr.plot import check_path

        check_path(plot)  # before the scoring, not after it
    is_file = str(model).endswith(FILE_SUFFIXES)
    if is_file:
        from edgehad.runtime import Session

        if not Path(model).is_file():
            raise _error(f"model file {model} not found: check the path")
        try:
            # the data are torch's NCHW images: an NHWC .tflite (edgehad's default) gets them transposed
            session = Session(model, threads=1, layout="nchw")
        except Exception as exc:
            raise _error(f"{model} cannot be loaded ({type(exc).__name__}): is it a valid model file?") from None
        source = "onnx" if str(model).endswith(".onnx") else "tflite"
    else:
        from edgehad.loading import load_model
        from edgehad.osr.stats import load_stats

        if not stats:
            raise _error("osr eval of a MODEL spec needs `stats` FILE.npz: fit it with `edgehad osr fit` "
                         "(`data` SPEC, `out` FILE.npz)")
        fitted = load_stats(stats)  # before the model: a missing file fails fast
        loaded = load_model(model, model_args=model_args, weights=weights, input_shapes=input_shape)
        source = "torch"
    xk, yk = getattr(load_data(known, normalize=normalize), split)
    unknown_data = load_data(unknown, normalize=normalize)
    xu, yu = getattr(unknown_data, split)
    if not is_file:
        import warnings

        from edgehad.osr.classes import unknowns_in_fit

        said = unknowns_in_fit(fitted, unknown_data, yu, unknown, known, stats)
        if said:
            (warn or (lambda msg: warnings.warn(msg, stacklevel=3)))(said)
    if is_file:
        zk, sk = _file_outputs(session, model, xk)
        _, su = _file_outputs(session, model, xu)
    else:
        zk, sk = _torch_outputs(loaded, fitted, stats, xk)
        _, su = _torch_outputs(loaded, fitted, stats, xu)
    C = zk.shape[1]
    if yk.min() < 0 or yk.max() >= C:
        raise _error(f"`known` {known!r}: labels {int(yk.min())}..{int(yk.max())} are not classes of this "
                     f"{C}-class model; the known data's labels must be the model's class indices")
    correct = zk.argmax(1) == yk
    table = metric_table(sk, correct, su)
    result = {
        "model": model, "source": source, "stats": None if is_file else str(stats), "split": split,
        "known": {"spec": known, "samples": int(len(yk)), "accuracy": float(correct.mean())},
        "unknown": {"spec": unknown, "samples": int(len(xu))},
        "scores": {name: table.get(name) for name in SCORES},
        "plot": None,
    }
    if plot:
        from edgehad.osr.plot import plot_oscr

        curves = {}
        for name in SCORES:
            if name in table:
                fpr, ccr, _ = oscr(sk[name], correct, su[name])
                curves[name] = (fpr, ccr, table[name]["auoscr"])
        plot_oscr(curves, plot, title=f"OSCR of {Path(str(model)).name}: {known} vs {unknown}")
        result["plot"] = str(plot)
    return result
