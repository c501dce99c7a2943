"""``edgehad bundle``: one folder with everything an app needs to run a converted model.

    import edgehad.bundle
    summary = edgehad.bundle.build("out/model.tflite", "out/bundle", labels="labels.txt")

writes, for a ``.tflite`` model:

    model.tflite        the model, unchanged
    manifest.json       I/O (shapes, dtypes, quantization), labels, preprocessing, ops, TFLM
                        op-resolver entries, arena size, size and SHA-256 (schema: manifest.schema.json)
    model_data.h/.c     the model as a 16-byte-aligned C array (c_array.py)
    main.cc, Makefile   one inference under TensorFlow Lite Micro (tflm_program.py)
    edgehad_runtime.py  edgehad/runtime.py, alone: stdlib + numpy + one runtime
    run_model.py        top-k of one input through edgehad_runtime (python_app.py)
    README.md           how to build and run each part (readme.py)

An ``.onnx`` model gets the model, manifest, Python part and README only:
TFLite Micro cannot run ONNX. Its external data files (``model.onnx.data``)
come along, at the same place relative to the model; a data location outside
the model's folder is refused.

User strings reach the generated C, C++, Python and Markdown only escaped
(quoting.py); the C name of the array is checked or derived (names.py) so that
it clashes with no keyword, header name or generated name.

Nothing is lost: the folder is built in a hidden sibling and renamed into place
at the end, so a failed bundle leaves no partial folder (and an existing one
untouched). The TFLM figures (ops, resolver, arena) come from
``edgehad.micro.check``, which runs the model under the real TFLM interpreter, and
the fit to a ``target`` from micro's ``target_check``; the bundle only words its
refusals and keeps the manifest's own key names (``TARGET_KEYS``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import tempfile
import unicodedata
from pathlib import Path, PurePosixPath, PureWindowsPath

from edgehad.core.errors import EdgehadError, UserInputError
from edgehad.core.files import current_umask, replace_dir

__all__ = ["build", "validate_manifest"]

SUPPORTED_SUFFIXES = (".tflite", ".onnx")
# The files build writes beside the model: an ONNX data file of one of these names would be overwritten.
GENERATED_FILES = frozenset({"manifest.json", "model_data.h", "model_data.c", "main.cc", "Makefile",
                             "edgehad_runtime.py", "run_model.py", "README.md"})


def validate_manifest(document, source: str = "manifest.json") -> dict:
    """Check a manifest (dict or path) against the shipped schema; see manifest.validate_manifest."""
    from edgehad.bundle.manifest import validate_manifest as _validate

    return _validate(document, source)


def build(model, out, *, target: str | None = None, name: str | None = None, labels=None,
          force: bool = False, warn=None) -> dict:
    """Write the bundle folder ``out`` for ``model`` (.tflite or .onnx); return a summary dict.

    ``labels``: a path to a text file (one label per line) or a list of strings.
    ``force``: replace an existing non-empty ``out``. ``warn(message)`` receives
    warnings (default: print to stderr). The summary holds ``out``, ``files``
    and the manifest under ``manifest``.
    """
    from edgehad.bundle import c_array

    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    model = Path(model)
    out = Path(out)
    # every check on the user's input comes before anything is written
    if not model.is_file():
        raise UserInputError(f"{_shown(model)}: no such file: check the path")
    suffix = model.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UserInputError(f"{_shown(model)}: bundle takes .tflite or .onnx files, not '{suffix or 'no extension'}'")
    symbol = c_array.check_symbol(name) if name is not None else c_array.symbol_from_filename(model.stem)
    _check_out(out, force)
    label_list = _read_labels(labels)
    external = _external_data(model) if suffix == ".onnx" else []
    from edgehad.inspection import inspect_file
    from edgehad.targets import load_target

    target_spec = load_target(target) if target else None  # a bad target: refused before the slow TFLM runs
    info = inspect_file(model)
    notes: list[str] = []
    if label_list is not None:
        _check_label_count(label_list, info["outputs"], labels)
    float_model = _is_float_io(info)
    micro = None
    if suffix == ".tflite":
        micro = _micro_check(model)
        if float_model:
            message = (f"{_shown(model.name)} has float inputs and outputs: it runs under TFLite Micro, but most "
                       "microcontrollers want an int8 model (convert it with `quantize='int8'` and `int8_io=True`)")
            warn(message)
            notes.append(message)
    else:
        notes.append("ONNX model: no C array or TFLite Micro program (TFLite Micro runs .tflite files only); "
                     "use the Python runtime, or bundle the .tflite file")
    target_doc = _check_target(target_spec, model, micro, external) if target_spec else None
    preprocessing, note = _preprocessing(model)
    if note:
        notes.append(note)

    manifest = _manifest(model, info, symbol if micro else None, micro, label_list, preprocessing, target_doc,
                         float_model, notes, external)
    from edgehad.bundle.manifest import validate_manifest as _validate

    try:
        _validate(manifest, "the generated manifest")
    except UserInputError as e:  # our own output: a bug, not the user's mistake
        raise EdgehadError(f"internal error: {e}") from None

    files = _write(out, force, model, manifest, symbol, micro, label_list, external)
    return {"out": str(out), "files": files, "manifest": manifest}


# -- checks -------------------------------------------------------------------

def _shown(path) -> str:
    """A path for a one-line message: as it is, or as a Python literal when it holds a newline or the like."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _check_out(out: Path, force: bool) -> None:
    from edgehad.core.files import check_writable

    if out.exists() and not out.is_dir():
        raise UserInputError(f"`out` {out} is a file: give a folder path")
    check_writable(out, "`out`", folder=True)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UserInputError(f"`out` {out} exists and is not empty: pick a new folder, or pass `force=True` to "
                             "replace it")


def _read_labels(labels) -> list[str] | None:
    """Labels from a list, or from a text file with one label per line (blank lines are skipped)."""
    if labels is None:
        return None
    if isinstance(labels, (list, tuple)):
        lines = [str(x).strip() for x in labels]
    else:
        path = Path(labels)
        if not path.is_file():
            raise UserInputError(f"`labels` {path}: no such file: give a text file with one label per line")
        try:
            lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        except UnicodeDecodeError:
            raise UserInputError(f"`labels` {path} is not UTF-8 text: save it as UTF-8, one label per line") from None
    lines = [ln for ln in lines if ln]
    if not lines:
        raise UserInputError(f"`labels` {labels}: no labels in it: write one label per line")
    source = "`labels`" if isinstance(labels, (list, tuple)) else f"`labels` {labels}"
    for i, label in enumerate(lines, 1):
        # a label is one line of text: a control character (ESC, NUL, a tab, a newline given through the
        # Python API) would reach the terminal of whoever runs the program, or the README, as it is
        bad = next((c for c in label if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
        if bad is not None:
            raise UserInputError(f"{source}: label {i} ({label!r}) holds the control character {bad!r}: "
                                 "write each label as one line of printable text")
    return lines


def _external_data(model: Path) -> list[str]:
    """The files an ONNX model keeps its tensors in (``location`` of external data), relative to its folder.

    Each must be a relative path to a file inside the model's folder (after
    symlinks are followed): onnxruntime reads ``folder/location``, so a
    location that is absolute or climbs out with ``..`` would make the bundle
    carry, or its users read, a file from elsewhere.
    """
    import onnx

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception:  # inspect_file has already said what is wrong with an unreadable file
        return []
    folder = model.parent.resolve()
    found: list[str] = []
    for tensor in _onnx_tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = f"{_shown(model)}: tensor {tensor.name!r} keeps its data"
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not isinstance(location, str) or not location or not location.isprintable():
            # protobuf hands back bytes for a string that is not UTF-8; a NUL or newline names no file
            raise UserInputError(f"{where} in an external file with no usable name ({location!r}): save the "
                                 "model again (onnx.save_model(..., save_as_external_data=True, location=NAME))")
        parts = location.replace("\\", "/").split("/")
        if PurePosixPath(location).is_absolute() or PureWindowsPath(location).anchor or ".." in parts:
            raise UserInputError(
                f"{where} at {location!r}, outside the model's folder: bundle only reads data files beside the "
                "model; save the model again with a relative location (onnx.save_model(..., "
                "save_as_external_data=True, location=NAME))")
        try:
            path = (model.parent / location).resolve()
            present = path.is_file()
        except (OSError, ValueError, RuntimeError):  # a name too long, a symlink loop
            path, present = None, False
        if path is not None and not path.is_relative_to(folder):
            raise UserInputError(
                f"{where} in {location!r}, which leads outside the model's folder (to {_shown(path)}): copy the "
                "data file beside the model instead of linking to it")
        if not present:
            raise UserInputError(f"{where} in {location!r}, which is not there: put that file beside the model "
                                 "(the model does not load without it)")
        relative = path.relative_to(folder).as_posix()
        if relative in GENERATED_FILES or relative == model.name:
            raise UserInputError(f"{where} in {location!r}, a name the bundle writes a file of its own under: save "
                                 "the model again with another location for its external data")
        if relative not in found:
            found.append(relative)
    return found


def _onnx_tensors(graph):
    """Every TensorProto of a graph: initializers, sparse ones, and attributes, in subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _onnx_tensors(attr.g)
            for sub in attr.graphs:
                yield from _onnx_tensors(sub)


def _check_label_count(labels: list[str], outputs: list[dict], source) -> None:
    from edgehad.bundle.manifest import output_size

    size = output_size(outputs[0])
    if size is not None and size != len(labels):
        raise UserInputError(f"`labels` {source} has {len(labels)} labels but the model's output "
                             f"{outputs[0]['name']!r} has {size} classes (shape {outputs[0]['shape']}): "
                             "give one label per class, in output order")


def _is_float_io(info: dict) -> bool:
    return all(str(t["dtype"]).startswith("float") for t in info["inputs"] + info["outputs"])


def _micro_check(model: Path) -> dict:
    """edgehad.micro's check with the arena search; refuse a model the TFLM program could not run.

    micro's check refuses ops without a TFLM kernel before its (slow) TFLM runs; the bundle only words
    the refusal for what it means here: no C program, no bundle.
    """
    import edgehad.micro
    from edgehad.micro.checker import NoKernelError

    try:
        result = edgehad.micro.check(str(model), find_arena=True)
    except NoKernelError as exc:
        raise NoKernelError(
            f"{_shown(model.name)} uses ops TensorFlow Lite Micro has no kernel for: {', '.join(exc.ops)}; "
            "the C program could not run it, so no bundle was written (replace those layers, or bundle the .onnx "
            "file for the Python runtime)", exc.ops) from None
    if result.get("problems"):
        raise EdgehadError(f"{_shown(model.name)} failed the TFLite Micro check, so no bundle was written: "
                           + "; ".join(result["problems"]) + " (see edgehad micro " + _shown(model) + ")")
    return result


# edgehad.micro's target entry -> the manifest's ``target`` keys (manifest.schema.json, README: stable)
TARGET_KEYS = {"name": "name", "ram_kb": "ram_kb", "flash_kb": "flash_kb", "flash_fits": "model_fits_flash",
               "ram_fits": "arena_fits_ram"}


def _check_target(target: dict, model: Path, micro: dict | None, external: list[str]) -> dict:
    """Model size (with its external data) against the target's flash, recommended arena against its RAM,
    compared by edgehad.micro's target_check; UserInputError if either fails (a bundle is not written for a
    target it does not fit, where ``edgehad micro`` reports the misfit)."""
    from edgehad.micro.checker import target_check

    size = model.stat().st_size + sum((model.parent / f).stat().st_size for f in external)
    arena = micro["arena"] if micro is not None else None
    entry, _ = target_check(target, arena and arena["recommended_bytes"], "recommended", size)
    doc = {ours: entry[theirs] for theirs, ours in TARGET_KEYS.items()}
    if doc["model_fits_flash"] is False:
        raise UserInputError(
            f"{_shown(model.name)} is {size} bytes ({size / 1024:.1f} KiB) but target {doc['name']} has "
            f"{doc['flash_kb']} KiB of flash: quantize it (`quantize='int8'`) or prune it, or pick a larger target")
    if doc["arena_fits_ram"] is False:
        raise UserInputError(
            f"{_shown(model.name)} needs a {arena['recommended_bytes']} byte ({arena['recommended_bytes'] / 1024:.1f} "
            f"KiB) tensor arena (recommended; minimum {arena['min_bytes']} bytes) but target {doc['name']} has "
            f"{doc['ram_kb']} KiB of RAM: use a smaller input or model, or pick a larger target")
    return doc


def _preprocessing(model: Path) -> tuple[dict | None, str | None]:
    """The normalisation recorded at convert time, from the report.json beside the model, if it describes it."""
    report_path = model.with_name("report.json")
    if not report_path.is_file():
        return None, ("preprocessing unknown: no report.json beside the model (edgehad convert writes one); "
                      "apply the normalisation the model was trained with")
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"preprocessing unknown: {report_path.name} beside the model is not valid JSON"
    names = {Path(a.get("path", "")).name for a in report.get("artifacts") or [] if isinstance(a, dict)}
    if model.name not in names:
        return None, (f"preprocessing unknown: {report_path.name} beside the model does not list {_shown(model.name)} "
                      "among the files it wrote")
    prep = report.get("preprocessing")
    if not prep:
        return None, "preprocessing unknown: the conversion recorded none (it ran without --data/--normalize)"
    return prep, None


# -- manifest and files -------------------------------------------------------

def _manifest(model, info, symbol, micro, labels, preprocessing, target_doc, float_model, notes, external) -> dict:
    from edgehad import __version__
    from edgehad.bundle.manifest import SCHEMA_VERSION, sha256_of, tensor_entry

    tflm = None
    if micro is not None:
        arena = micro["arena"]
        tflm = {"resolver": list(micro["resolver"]), "resolver_size": len(micro["resolver"]),
                "arena": {"min_bytes": int(arena["min_bytes"]), "recommended_bytes": int(arena["recommended_bytes"]),
                          "note": _arena_note(arena)},
                "program": "main.cc", "makefile": "Makefile", "tflm_version": str(micro.get("tflm_version") or ""),
                "parity_vs_litert": _parity(micro.get("parity"))}
    ops = list(micro["ops"]) if micro is not None else sorted(info["ops"])
    return {
        "schema_version": SCHEMA_VERSION,
        "edgehad_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {"file": model.name, "format": model.suffix.lower().lstrip("."),
                  "size_bytes": model.stat().st_size, "sha256": sha256_of(model),
                  "quantized": bool(info.get("quantized")), "float_model": float_model,
                  "external_data": list(external)},
        "inputs": [tensor_entry(t) for t in info["inputs"]],
        "outputs": [tensor_entry(t) for t in info["outputs"]],
        "labels": labels,
        "preprocessing": preprocessing,
        "ops": ops,
        "tflm": tflm,
        "c_array": ({"symbol": symbol, "length_symbol": f"{symbol}_len", "header": "model_data.h",
                     "source": "model_data.c", "alignment": 16} if symbol else None),
        "python": {"runtime": "edgehad_runtime.py", "script": "run_model.py"},
        "target": target_doc,
        "notes": notes,
    }


def _parity(parity: dict | None) -> dict | None:
    if not parity:
        return None
    return {"max_abs": float(parity["max_abs"]), "max_steps": parity.get("max_steps"), "passed": bool(parity["passed"])}


def _arena_note(arena: dict) -> str:
    from edgehad.micro.arena import HOST_NOTE

    return arena.get("host_note") or arena.get("note") or HOST_NOTE


def _write(out: Path, force: bool, model: Path, manifest: dict, symbol: str, micro, labels,
           external: list[str]) -> list[str]:
    """Write every file into a hidden sibling of ``out``, then rename it into place.

    ``external`` (ONNX data files, relative to the model's folder) keep their
    relative place beside the model, where onnxruntime looks for them.
    """
    from edgehad.bundle import c_array, python_app, readme, tflm_program

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        shutil.copyfile(model, stage / model.name)
        for relative in external:
            (stage / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model.parent / relative, stage / relative)
        data = (stage / model.name).read_bytes()
        if micro is not None:
            (stage / "model_data.h").write_text(c_array.render_header(symbol, data, model.name))
            (stage / "model_data.c").write_text(c_array.render_source(symbol, data, model.name))
            tflm = manifest["tflm"]
            (stage / "main.cc").write_text(tflm_program.render_main(
                symbol, tflm["resolver"], tflm["arena"]["recommended_bytes"], tflm["arena"]["note"], labels,
                model.name))
            (stage / "Makefile").write_text(tflm_program.render_makefile())
        shutil.copyfile(python_app.RUNTIME_SOURCE, stage / "edgehad_runtime.py")
        (stage / "run_model.py").write_text(python_app.RUN_MODEL)
        os.chmod(stage / "run_model.py", 0o755)
        (stage / "README.md").write_text(readme.render(manifest))
        (stage / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes 0700; the bundle is an ordinary folder
        files = sorted(p.name for p in stage.iterdir())
        _put_in_place(stage, out, force)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return files


def _put_in_place(stage: Path, out: Path, force: bool) -> None:
    """``stage`` becomes ``out`` (edgehad.core.files.replace_dir); the previous bundle ends at ``stage``'s path,
    which the caller removes."""
    _check_out(out, force)  # again: something may have appeared while we worked
    replace_dir(stage, out)
