"""The Python API; the CLI commands are thin wrappers over these functions."""

from __future__ import annotations

from pathlib import Path

from edgehad.core.errors import UserInputError
from edgehad.profiling.job import Job  # light (dataclass + checks); its defaults are profile()'s


def convert(model, example_inputs: tuple | None = None, *, weights: str | None = None,
            input_shape: list[str] | str | tuple | None = None,
            model_args: dict | None = None, recipe: str | None = None, formats: list[str] | str | None = None,
            data: str | None = None, normalize: str | None = None, out: str | Path = "out",
            keep_intermediate: bool = False, samples: int | None = None, quantize: str | None = None,
            calib: str | None = None, calib_samples: int | None = None, int8_io: bool | None = None,
            keep_float: str | None = None, prune: float | None = None, prune_criterion: str | None = None,
            prune_scope: str | None = None, prune_target: str | None = None, prune_round_to: int | None = None,
            prune_steps: int | None = None, prune_structure: str | None = None, prune_unsafe: str | None = None,
            prune_blocks: float | None = None, finetune_epochs: int | None = None, distill: bool | None = None,
            rewrite: str | list | None = None, strict: bool | None = None, osr: str | None = None,
            max_accuracy_drop: float | None = None, tflite_layout: str | None = None, dynamic_batch: bool = False,
            progress=None) -> dict:
    """Convert ``model`` (a MODEL spec, or an nn.Module) and return the report.

    Mirrors ``edgehad convert``: the stages come from ``recipe`` (default
    ``converters/float.toml``) with ``formats`` replacing its export stages.
    Files land in ``out`` only when every stage, verification included, passed.

    ``example_inputs``: a tuple of tensors, as ``torch.export.export`` takes them (else the
    module's ``example_inputs`` attribute, or ``input_shape``: ``"1x3x32x32"``, ``(1, 3, 32, 32)``
    or a list of either, one per input). ``data``: a spec string, or data in memory (see
    ``edgehad.data.load_data``); a model with several inputs takes named data, arrays by its input
    names (its forward arguments), e.g. an .npz of ``input_ids``, ``attention_mask`` and optional
    ``y``: verification, calibration and (with y) accuracy then run on those real inputs.
    The caller's module is never changed: edgehad works on a copy.
    ``tflite_layout``: "nhwc" (default) or "nchw": the TFLite file's 4-D image inputs and outputs
    channels-last, or in PyTorch's order (edgehad.export.layout); a model without 4-D image I/O is
    unaffected. None: the recipe's ``[export-tflite] layout``, else "nhwc".
    ``dynamic_batch``: the first dim of every input is symbolic in both formats, each file verified at
    batch 1 and 4 (edgehad.export.batch).
    ``prune_target``: what ``prune`` R counts, as the fraction removed: "channels" (default), "macs",
    "params", or "latency": the pruned model should run in (1 - R) of the original's time on this
    machine (1 thread), in onnxruntime and the recipe's scheme (int8 layers for an int8 recipe); per-group
    widths come from a per-layer latency table, measured once and cached (edgehad.prune.allocate).
    ``prune_blocks``: the fraction of residual blocks (a module returning x + f(x)) to remove before
    any channel, lowest block influence first (edgehad.prune.blocks); alone, it removes no channel. With
    ``prune_target='latency'`` the blocks go by influence per table microsecond and ``prune`` still counts
    from the whole model.
    """
    from edgehad.core.artifact import Artifact
    from edgehad.core.pipeline import DEFAULT_SAMPLES, bind_data, model_cost, run_pipeline, sample_inputs
    from edgehad.core.recipe import build_stages, load_recipe
    from edgehad.export.verify import torch_outputs
    from edgehad.loading import load_model
    from edgehad.report import write_report

    from edgehad.core.files import check_out_folder

    progress = progress or (lambda msg: None)
    out = check_out_folder(out)  # before anything heavy: a folder that cannot be written costs nothing
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 10000):
        raise UserInputError(f"samples must be an integer in [1, 10000], got {samples!r}")
    input_shape = _shape_texts(input_shape)
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    rec = load_recipe(recipe) if recipe else None
    overrides = {}
    if quantize is not None or calib is not None or calib_samples is not None or int8_io or keep_float:
        overrides["quantize"] = {"scheme": quantize, "calib": calib, "calib_samples": calib_samples,
                                 "int8_io": int8_io or None, "keep_float": keep_float}
    prune_opts = {"ratio": None if prune is None else float(prune), "criterion": prune_criterion,
                  "scope": prune_scope, "target": prune_target, "round_to": prune_round_to, "unsafe": prune_unsafe,
                  "steps": prune_steps, "structure": prune_structure, "blocks": prune_blocks}
    if any(v is not None for v in prune_opts.values()):
        if prune is None and prune_blocks is not None and not (rec and "prune" in rec.stages):
            prune_opts["ratio"] = 0.0  # blocks alone: remove no channel
        elif prune is None and not (rec and "prune" in rec.stages):
            raise UserInputError("`prune_*` options need `prune` RATIO (or a recipe with a prune stage)")
        overrides["prune"] = prune_opts
    if rewrite is not None or strict is not None:
        if rewrite is None and not (rec and "rewrite" in rec.stages):
            raise UserInputError("`strict` needs `rewrite` RULE[,RULE...]")
        overrides["rewrite"] = {"rules": ",".join(rewrite) if isinstance(rewrite, (list, tuple)) else rewrite,
                                "strict": strict}
    if finetune_epochs is not None and finetune_epochs < 0:
        raise UserInputError(f"`finetune_epochs` must be >= 0 (0 skips fine-tuning), got {finetune_epochs}")
    changes_function = _rewrites_change_function(overrides.get("rewrite", {}).get("rules"))
    # a pruned model is recovered by default whenever there is data to train on: pruning half of digits_cnn's
    # channels takes its top-1 from 99% to 11%, and parity alone would call that file verified
    prunes = "prune" in overrides or bool(rec and "prune" in rec.stages)
    data_spec = data if data is not None else (rec.data.get("spec") if rec else None)
    has_data = data_spec is not None and not (isinstance(data_spec, str) and not data_spec)
    recovers = changes_function or (prunes and has_data)
    if finetune_epochs is not None or distill is not None or recovers:
        if finetune_epochs is None and distill is not None and not recovers \
                and not (rec and "finetune" in rec.stages):
            raise UserInputError("`distill` needs `finetune_epochs` N (or a recipe with a finetune stage)")
        if finetune_epochs != 0:
            overrides["finetune"] = {"epochs": finetune_epochs, "distill": distill}
    if max_accuracy_drop is not None:
        overrides["verify"] = {"max_accuracy_drop": max_accuracy_drop}
    if tflite_layout is not None:
        from edgehad.core.recipe import default_recipe

        writes_tflite = "tflite" in formats if formats is not None else "export-tflite" in (rec or default_recipe()).stages
        if not writes_tflite:
            raise UserInputError("`tflite_layout` sets the layout of the TFLite file, and none is written: "
                                 "add tflite to `formats`")
        overrides["export-tflite"] = {"layout": tflite_layout}
    if dynamic_batch:
        from edgehad.core.recipe import FORMAT_STAGES, default_recipe

        written = [FORMAT_STAGES[f] for f in formats if f in FORMAT_STAGES] if formats is not None \
            else [s for s in FORMAT_STAGES.values() if s in (rec or default_recipe()).stages]
        for stage in written:  # a stage left out stays out (build_stages adds what overrides name)
            overrides.setdefault(stage, {})["dynamic_batch"] = dynamic_batch
    if osr is not None:  # the COSTARR head (edgehad.stages.osr); the quantize stage keeps it float
        overrides["osr"] = {"stats": str(osr)}
        if keep_float == "auto":
            raise UserInputError("`keep_float='auto'` cannot be combined with `osr` (it would quantize the head): "
                                 "name the layers to keep float instead")
    stage_list = build_stages(rec, formats=formats, overrides=overrides)  # validate flags before heavy work
    if finetune_epochs == 0:  # explicit: no recovery, e.g. for a speed measurement
        stage_list = [s for s in stage_list if s.name != "finetune"]
    for stage in stage_list:  # prune's latency target is measured in the format and scheme that follow it
        if hasattr(stage, "see_pipeline"):
            stage.see_pipeline(stage_list)

    if isinstance(model, str):
        if example_inputs is not None:
            raise UserInputError("example_inputs goes with an nn.Module; a MODEL spec takes input_shape")
        loaded = load_model(model, model_args=model_args, weights=weights, input_shapes=input_shape)
    else:
        loaded = _from_module(model, input_shape, weights, example_inputs)

    normalize = normalize or (rec.data.get("normalize") if rec else None)
    splits = None
    if has_data:
        from edgehad.data import load_data

        progress(f"loading data {data_spec if isinstance(data_spec, str) else '(in memory)'}")
        splits = load_data(data_spec, normalize=normalize)
    elif normalize:
        raise UserInputError("`normalize` needs `data`: it describes how the data is prepared")
    for stage in stage_list:
        if stage.name == "finetune" and splits is None and changes_function and finetune_epochs is None:
            raise UserInputError(f"`rewrite` {overrides['rewrite']['rules']} changes the model's function and is "
                                 "followed by distillation from the original, which needs `data`; "
                                 "pass `finetune_epochs=0` to skip it (e.g. for a speed measurement)")
        if stage.needs_data and splits is None:
            what = {"finetune": "`finetune_epochs` trains on its train split",
                    "prune": f"`prune_criterion` {getattr(stage, 'config', {}).get('criterion')} scores channels on it",
                    "osr": "`osr='fit'` fits the COSTARR statistics on its train split"}
            raise UserInputError(f"{stage.name} needs `data`: {what.get(stage.name, 'it uses real samples')}")

    splits = bind_data(splits, loaded.module, loaded.example_inputs, stage_list)
    params, macs = model_cost(loaded.module, loaded.example_inputs)
    source = {
        "spec": loaded.spec, "name": loaded.name, "params": params, "macs": macs,
        "model_args": loaded.model_args, "weights": loaded.weights,
        "inputs": [{"shape": list(t.shape), "shape_text": "x".join(map(str, t.shape)), "dtype": str(t.dtype).replace("torch.", "")}
                   for t in loaded.example_inputs],
        "exported_program": loaded.is_exported_program,
    }
    artifact = Artifact(model=loaded.module, example_inputs=loaded.example_inputs, source=source, data=splits,
                        preprocessing=getattr(splits, "preprocessing", None),
                        is_exported_program=loaded.is_exported_program)
    artifact.sample_inputs = sample_inputs(loaded.example_inputs, splits, n=samples or DEFAULT_SAMPLES)
    artifact.original_outputs = torch_outputs(loaded.module, artifact.sample_inputs)
    artifact.original_model = loaded.module
    return run_pipeline(artifact, stage_list, out, keep_intermediate=keep_intermediate, progress=progress,
                        write_report=write_report)


def _rewrites_change_function(rules) -> bool:
    """Whether any of the named rewrite rules changes what the model computes (then fine-tuning follows)."""
    if not rules:
        return False
    from edgehad.rewrite import get_rules

    return any(r.changes_function for r in get_rules(rules))


def _shape_texts(input_shape) -> list[str] | None:
    """``"1x3x32x32"``, ``(1, 3, 32, 32)`` or a list of either -> ``["1x3x32x32", ...]``."""
    if input_shape is None:
        return None
    if isinstance(input_shape, str):
        return [input_shape]
    shapes = list(input_shape)
    if shapes and all(isinstance(d, int) and not isinstance(d, bool) for d in shapes):
        shapes = [shapes]  # one shape given as a tuple of ints
    out = []
    for shape in shapes:
        if isinstance(shape, str):
            out.append(shape)
        elif isinstance(shape, (tuple, list)) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            out.append("x".join(str(d) for d in shape))
        else:
            raise UserInputError(f"input_shape {input_shape!r}: give '1x3x32x32', (1, 3, 32, 32) or a list of them")
    return out


def _from_module(module, input_shape, weights, example_inputs=None):
    import copy

    import torch

    from edgehad.loading import LoadedModel, check_inputs_fit, load_weights, make_inputs

    if not isinstance(module, torch.nn.Module):
        raise UserInputError(f"model must be a MODEL spec string or a torch.nn.Module, not {type(module).__name__}")
    module = copy.deepcopy(module)  # eval mode, weights and every later stage act on edgehad's copy
    if weights:
        load_weights(module, weights)
    if example_inputs is not None and input_shape:
        raise UserInputError("give example_inputs or input_shape, not both")
    if example_inputs is not None:
        example = example_inputs
    else:
        example = make_inputs(input_shape) if input_shape else getattr(module, "example_inputs", None)
    if example is None:
        raise UserInputError("the module has no example_inputs attribute: pass input_shape=['1x3x224x224']")
    example = (example,) if isinstance(example, torch.Tensor) else tuple(example)
    module.eval()
    name = type(module).__name__
    check_inputs_fit(module, example, name)
    return LoadedModel(module, example, f"<module {name}>", name, weights=weights)


def inspect(target, *, model_args: dict | None = None, weights: str | None = None,
            input_shape: list[str] | str | dict | None = None, inputs=None) -> dict:
    """Describe a ``.onnx``/``.tflite`` file or a MODEL spec (keys: format, inputs, outputs, ops, params, macs,
    input_shapes, size_bytes, quantized).

    A file's MACs are computed at its static input shapes; its symbolic dims come from ``input_shape``
    ("images=1x3x640x640", a bare shape for a one-input file, a list or a ``{name: shape}`` dict) or
    ``inputs`` (an .npz path or a dict of arrays by input name), else UserInputError naming every dim.
    For a MODEL spec ``input_shape`` is its example input shape ("1x3x224x224").
    """
    from edgehad.inspection import inspect_file, inspect_torch

    text = str(target)
    if text.endswith((".onnx", ".tflite")) or (Path(text).is_file() and not text.endswith((".py", ".pt2"))):
        # an unknown extension gets inspect_file's error
        return inspect_file(text, input_shape=input_shape, inputs=inputs, require_shapes=True)
    if inputs is not None:
        raise UserInputError(f"{text}: `inputs` goes with a .onnx or .tflite file; a MODEL spec takes "
                             "`input_shape` (e.g. 1x3x224x224)")
    from edgehad.loading import load_model

    loaded = load_model(text, model_args=model_args, weights=weights, input_shapes=input_shape)
    info = inspect_torch(loaded.module, loaded.example_inputs)
    info["spec"] = loaded.spec
    return info


def rewrite_rules() -> list[dict]:
    """The rewrite rules: name, what each matches, what it costs or saves."""
    from edgehad.rewrite import rules

    return [{"rule": r.name, "matches": r.matches, "effect": r.effect, "changes_function": r.changes_function}
            for r in rules().values()]


def explain_rewrite(model, *, rules: str | list | None = None, model_args: dict | None = None,
                    weights: str | None = None, input_shape: list[str] | None = None) -> list[dict]:
    """Which modules each rule would rewrite in ``model``, and why it would leave the others."""
    from edgehad.loading import load_model
    from edgehad.rewrite import explain, get_rules, rules as all_rules

    chosen = get_rules(rules) if rules else list(all_rules().values())
    loaded = load_model(model, model_args=model_args, weights=weights, input_shapes=input_shape)
    return [r.as_dict() for r in explain(loaded.module, loaded.example_inputs, chosen)]


def profile(files, *, host=None, target: str | None = None, report=None, data: str | None = None,
            input_shape=None, inputs=None, runtime: str = Job.runtime, threads: int = Job.threads,
            warmup: int = Job.warmup, runs: int = Job.runs, seconds: float | None = Job.seconds,
            op_profile: bool = Job.op_profile, seed: int = Job.seed, provider: str = Job.provider,
            precision: str = Job.precision, power: bool = Job.power, timeout: float | None = Job.timeout,
            progress=None) -> list[dict]:
    """Measure latency and memory of each ``.onnx``/``.tflite`` file, each in its own fresh process.

    How (``edgehad.profiling.job.Job``, whose defaults these are, checks them): ``runtime`` ("auto", "ort",
    "tflite"), ``threads``, ``warmup`` untimed runs, then ``runs`` timed ones or as many as fit in
    ``seconds``, ``op_profile``, ``seed`` of the random inputs, ``provider`` ("cpu", "cuda", "tensorrt"),
    ``precision`` ("fp32"; "fp16": TensorRT's fp16 mode, with provider "tensorrt" only), ``power`` (Jetson
    power rails), ``timeout`` seconds per file.
    ``host``: None (here), or ``ssh://user@host[:port]`` / a hosts.toml name, several as a list or
    comma-separated; ``target``: a targets/ name (``emulated-aarch64`` runs the ARM runtimes under qemu);
    ``report``: a folder for the HTML report; ``data``: a data spec whose samples replace random inputs
    (channels-last for a .tflite that states NHWC images).
    ``input_shape`` ("images=1x3x640x640", a bare shape for one input, a list or a dict) sizes a file's
    symbolic dims for the random inputs; ``inputs`` (an .npz or a dict of arrays by input name) is fed
    instead of them, as the file takes them (nothing transposed). A symbolic dim neither fills is a UserInputError naming it (never guessed).
    ``progress``: each file's phases as messages and, where it has ``bar``, a bar over the timed runs.
    One dict per (host, file), in order; keys documented in README.md ("profile JSON keys").
    """
    from edgehad.profiling.run import profile_all

    job = Job(runtime=runtime, threads=threads, warmup=warmup, runs=runs, seconds=seconds, op_profile=op_profile,
              seed=seed, provider=provider, precision=precision, power=power, timeout=timeout)
    files = [files] if isinstance(files, (str, Path)) else list(files)
    return profile_all(files, job, host=host, target=target, report=report, data=data,
                       progress=progress, input_shape=input_shape, inputs=inputs)


def micro(path, *, arena_kb: float | None = None, find_arena: bool = False, target: str | None = None,
          samples: int = 8, timeout: float | None = None, input_shape=None, inputs=None, progress=None) -> dict:
    """Run a ``.tflite`` under TFLite Micro: op support, parity with LiteRT, the arena; see ``edgehad.micro.check``.

    ``timeout``: seconds each TFLM or LiteRT child run may take (None: 120). ``input_shape`` names the
    shapes of a file's symbolic dims (TFLM runs the ones stored in the file); ``inputs`` (an .npz or a
    dict of arrays by input name) is the sample compared instead of seeded random ones.
    """
    from edgehad.micro import check

    return check(path, arena_kb=arena_kb, find_arena=find_arena, target=target, samples=samples,
                 progress=progress, timeout=timeout, input_shape=input_shape, inputs=inputs)


def bundle(path, out, *, target: str | None = None, name: str | None = None, labels=None, force: bool = False,
           warn=None) -> dict:
    """Write a deployable folder for ``path`` (.tflite or .onnx) into ``out``; see ``edgehad.bundle.build``.

    ``name``: the C symbol of the model array; ``labels``: a text file (one per line) or a list;
    ``force``: replace a non-empty ``out``; ``warn(message)``: where warnings go.
    """
    from edgehad.bundle import build

    return build(path, out, target=target, name=name, labels=labels, force=force, warn=warn)


def osr_fit(model, data, out, *, classifier: str | None = None, normalize=None, model_args: dict | None = None,
            weights: str | None = None, input_shape: list[str] | None = None, warn=None) -> dict:
    """Fit COSTARR statistics of ``model`` on the train split of ``data``; write them to ``out``; see ``edgehad.osr.fit``."""
    from edgehad import osr

    return osr.fit(model, data, out, classifier=classifier, normalize=normalize, model_args=model_args,
                   weights=weights, input_shape=input_shape, warn=warn)


def osr_eval(model, known, unknown, *, stats: str | None = None, normalize=None, split: str = "val", plot=None,
             model_args: dict | None = None, weights: str | None = None, input_shape: list[str] | None = None,
             warn=None) -> dict:
    """Open-set metrics of every score on ``known`` vs ``unknown``; see ``edgehad.osr.evaluate``."""
    from edgehad import osr

    return osr.evaluate(model, known, unknown, stats=stats, normalize=normalize, split=split, plot=plot,
                        model_args=model_args, weights=weights, input_shape=input_shape, warn=warn)


def targets() -> list[dict]:
    """Every device description (the shipped ones, or $EDGEHAD_TARGETS_DIR's), validated, sorted by name."""
    from edgehad.targets import list_targets

    return list_targets()


def target(name: str) -> dict:
    """One target by name or .toml path, validated; ``local`` is this machine (see ``edgehad.targets``)."""
    from edgehad.targets import load_target

    return load_target(name)


def calibrate_target(name: str = "local", *, size: int | None = None, progress=None) -> dict:
    """Measure this machine's fp32 / int8 peaks and memory bandwidth for the ``local`` target and store them.

    ``size``: the side of the benchmark's square matrices (default 1024; smaller is quicker and less exact).
    Returns the stored record (``fp32_gops``, ``int8_gops``, ``memory_bandwidth_gbs``, ``date``, ``threads``,
    ...) and ``file``; see ``edgehad.profiling.calibrate``.
    """
    from edgehad.targets import LOCAL

    if name != LOCAL:
        raise UserInputError(f"target {name!r} cannot be calibrated from here: only {LOCAL} (this machine) can; "
                             f"a device's figures are in its targets/{name}.toml")
    from edgehad.profiling.calibrate import calibrate

    return calibrate(size=size, progress=progress)


def setup_target(name: str, *, force: bool = False, progress=None) -> str:
    """One-time setup of a target that needs it (``emulated-aarch64``); returns where it lives."""
    if name != "emulated-aarch64":
        raise UserInputError(f"target {name!r} needs no setup: only emulated-aarch64 does")
    from edgehad.profiling.emulated import setup_emulated

    return str(setup_emulated(force=force, progress=progress or (lambda message: None)))


def search(model, *, data, out, weights: str | None = None, model_args: dict | None = None,
           target: str | None = None, host: str | None = None, space=None, budget=None,
           objectives=("accuracy", "latency", "size"), trials: int | None = None, minutes: float | None = None,
           jobs: int = 1, seed: int = 0, resume: bool = False, ray: str | None = None, progress=None) -> dict:
    """Search the recipe space of ``model`` for the Pareto front of accuracy, latency and size; see edgehad.search.

    ``model``: a MODEL spec string (each trial converts it in a worker process); ``data``: a data spec, whose
    val split gives each trial's accuracy; ``out``: the search folder (study.db, search.json, trials/K/,
    front/K/). ``space``: a search space .toml or a shipped name (None: ``default``); ``budget``:
    ``"latency_ms=5,size_kb=300,ram_kb=256,flash_kb=1024,accuracy=0.95"`` or a dict, the bounds a front member
    must meet (ram_kb, flash_kb: TFLite Micro's arena and the .tflite file, for an MCU target, i.e. a target
    description with flash_kb); ``objectives``: some of accuracy, latency, size, ram, flash. ``weights`` /
    ``model_args``: the model's state dict and factory arguments, as for ``convert``. ``trials`` (default 20) or
    ``minutes``; ``jobs`` trials at once in local worker processes; ``seed``: the same seed gives the same
    trials whatever ``jobs``.
    ``target`` (default local) / ``host``: where latency is timed (a device target without a host: its
    roofline estimate). ``resume``: finish the search stored in ``out``. ``ray``: ``"auto"`` or a cluster's
    ``"host:port"``: the same trials as Ray tasks on that cluster (edgehad.search.ray_executor; needs the
    ``ray`` extra). Returns the search.json document.
    """
    from edgehad.search.run import search as run_search

    return run_search(model, data=data, out=out, weights=weights, model_args=model_args, target=target, host=host,
                      space=space, budget=budget,
                      objectives=objectives, trials=trials, minutes=minutes, jobs=jobs, seed=seed, resume=resume,
                      ray=ray, progress=progress)
