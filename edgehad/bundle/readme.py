"""The bundle's README.md: what is in the folder and how to build and run each part.

Every string that came from the user or the model (file, tensor, label and
target names, notes that quote them) goes through quoting.md_text/md_code, and
the Python snippet names the model with ``repr``: a name holding a newline,
backticks or ``#`` cannot add a heading, a code fence or a line of code.
"""

from __future__ import annotations

from edgehad.bundle.quoting import md_code, md_text


def _tensor_line(t: dict) -> str:
    q = t["quantization"]
    quant = f", scale {q['scale']:.6g}, zero point {q['zero_point']}" if q else ""
    layout = {"nhwc": ", NHWC (channels-last)", "nchw": ", NCHW (channels-first)"}.get(t.get("layout"), "")
    return f"- {md_code(t['name'])}: {md_text(t['dtype'])} {md_text(str(t['shape']))}{layout}{quant}"


def render(manifest: dict) -> str:
    model = manifest["model"]
    lines = [
        f"# {md_text(model['file'])}: edgehad bundle",
        "",
        f"Written by edgehad {manifest['edgehad_version']} on {manifest['created']}. "
        f"{md_code(model['file'])}: {model['size_bytes']} bytes, SHA-256 `{model['sha256']}`. "
        "`manifest.json` describes the model for programs (schema: edgehad/bundle/manifest.schema.json).",
        "",
        *([f"Its tensors' data is in {', '.join(md_code(f) for f in model['external_data'])}: keep "
           + ("it" if len(model["external_data"]) == 1 else "them") + " beside the model, where onnxruntime "
           "looks.", ""] if model.get("external_data") else []),
        "## Inputs and outputs",
        "",
        "Quantized tensors: real = (q - zero_point) * scale.",
        "",
        "Inputs:",
        *[_tensor_line(t) for t in manifest["inputs"]],
        "",
        "Outputs:",
        *[_tensor_line(t) for t in manifest["outputs"]],
        "",
    ]
    if manifest["labels"]:
        shown = ", ".join(md_text(label) for label in manifest["labels"][:20])
        more = " ..." if len(manifest["labels"]) > 20 else ""
        lines += [f"Labels ({len(manifest['labels'])}, in output order): {shown}{more}", ""]
    lines += ["## Preprocessing", ""]
    if manifest["preprocessing"]:
        lines += ["Apply this to the raw input before the model (recorded when the model was converted):", "",
                  "```json", _json(manifest["preprocessing"]), "```", ""]
    else:
        lines += ["Unknown: the conversion recorded none here. Apply the normalisation the model was trained "
                  "with.", ""]
    lines += [
        "## Python (numpy + one runtime, no torch)",
        "",
        "```sh",
        f"pip install numpy {'onnxruntime' if model['format'] == 'onnx' else 'ai-edge-litert   # or tflite-runtime on a board'}",
        "python run_model.py              # a random input; top-5 classes",
        "python run_model.py sample.npy   # an input saved with numpy.save, already preprocessed",
        "```",
        "",
        "In your own code, `edgehad_runtime.py` (one file) takes and returns float arrays; it quantizes "
        "int8 inputs and dequantizes int8 outputs with the model's own parameters:",
        "",
        "```python",
        "from edgehad_runtime import Session",
        f"session = Session({model['file']!r})",
        "scores = session.run([x])[0]       # x: float32 array of the input's shape (and layout)",
        "```",
        "",
    ]
    if any(t.get("layout") == "nhwc" for t in manifest["inputs"] + manifest["outputs"]):
        lines += ["Its images are channels-last (NHWC). Arrays in PyTorch's order (NCHW) can be passed as they "
                  f"are with `Session({model['file']!r}, layout=\"nchw\")`: it transposes them, and 4-D "
                  "outputs back.", ""]
    tflm = manifest["tflm"]
    if tflm:
        arena = tflm["arena"]
        c = manifest["c_array"]
        lines += [
            "## C / C++ with TensorFlow Lite Micro",
            "",
            f"`model_data.h` / `model_data.c` hold the model as `const unsigned char {c['symbol']}[]` "
            f"({c['alignment']}-byte aligned; TFLM reads it in place) and `const unsigned int {c['length_symbol']}`. "
            "They compile as C99 or C++; add both to your firmware.",
            "",
            f"`main.cc` runs one inference: it registers exactly the {tflm['resolver_size']} ops the model uses "
            f"(`tflite::MicroMutableOpResolver<{tflm['resolver_size']}>`: {', '.join(tflm['resolver'])}), "
            "fills the inputs with zeros (the zero point when int8), invokes, and prints the outputs.",
            "",
            "Tensor arena (found by `edgehad micro --find-arena`, running the model under TFLM):",
            "",
            f"- recommended: {arena['recommended_bytes']} bytes ({arena['recommended_bytes'] / 1024:.1f} KiB), "
            "the size `main.cc` allocates",
            f"- minimum that worked: {arena['min_bytes']} bytes",
            f"- note: {arena['note']}",
            "",
            "Build and run on the host (TFLM is not on PyPI or in Debian: use a tflite-micro checkout):",
            "",
            "```sh",
            "git clone https://github.com/tensorflow/tflite-micro && cd tflite-micro",
            "make -f tensorflow/lite/micro/tools/make/Makefile microlite    # downloads its third-party code, builds the library",
            "cd - && make TFLM_DIR=/path/to/tflite-micro && ./run_model",
            "```",
            "",
            "For a microcontroller, build the library for it (e.g. `TARGET=cortex_m_generic TARGET_ARCH=cortex-m4 "
            "OPTIMIZED_KERNEL_DIR=cmsis_nn`) and set `TFLM_GEN_DIR` to its gen/ folder, or add main.cc's resolver "
            "and arena to your firmware.",
            "",
        ]
    else:
        lines += ["## C / C++", "", "None: TensorFlow Lite Micro runs .tflite files only. Bundle the .tflite "
                  "file for the C array and the TFLM program.", ""]
    target = manifest["target"]
    if target:
        flash = f"{target['flash_kb']} KiB flash" if target["flash_kb"] else "no flash figure"
        lines += ["## Target", "", f"Checked against {md_code(target['name'])} ({target['ram_kb']} KiB RAM, {flash}): "
                  f"model fits flash: {_yes(target['model_fits_flash'])}, arena fits RAM: "
                  f"{_yes(target['arena_fits_ram'])}.", ""]
    if manifest["notes"]:
        lines += ["## Notes", "", *[f"- {md_text(n)}" for n in manifest["notes"]], ""]
    return "\n".join(lines)


def _yes(value) -> str:
    return "not checked" if value is None else ("yes" if value else "no")


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2)
