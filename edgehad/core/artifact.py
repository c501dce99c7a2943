"""The thing a pipeline passes from stage to stage, with every field it may carry.

The stage contract: a stage reads and writes only the named fields below, and
declares which in its ``reads`` / ``writes`` (edgehad.core.stage.Stage); the
pipeline checks after each stage that it replaced no field it did not declare.
There is no free-form dict: a new piece of state between stages is a new field
here, with its type and who writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable


@dataclass
class ExportedFile:
    """One file a stage wrote, and what verification found."""

    format: str            # "onnx" | "tflite"
    variant: str           # "float", later "int8", "pruned", ...
    stage: str             # the stage that wrote it
    path: Path             # in the staging folder while the pipeline runs
    final_name: str = ""   # the name it gets in --out
    parity: dict | None = None
    reference: list | None = field(default=None, repr=False)  # torch outputs it must match
    # a file written with a dynamic batch (edgehad.export.batch): the torch outputs at batch BATCH it must
    # match as well; None: a file verified at batch 1 only
    batch_reference: list | None = field(default=None, repr=False)
    # TFLite: {"inputs": [...], "outputs": [...]}, each "nchw", "nhwc" or None (no image), as stamped in the
    # file (edgehad.export.layout); verification feeds it accordingly. None: torch's layout throughout (ONNX)
    layout: dict | None = None

    def to_report(self, out_dir: Path | None = None) -> dict:
        name = self.final_name or self.path.name
        where = (out_dir / name) if out_dir is not None else self.path
        return {
            "format": self.format, "variant": self.variant, "stage": self.stage,
            "path": str(where), "size_bytes": self.path.stat().st_size if self.path.exists() else None,
            "parity": self.parity, "layout": self.layout,
        }


@dataclass
class QuantizationPlan:
    """What the quantize stage decided; the export stages carry it out without knowing the scheme.

    Every callable comes from edgehad.quantize, so all of a scheme's work is
    written there and an exporter only does: export the current model (with
    ``tflite_quant_config`` / ``onnx_postprocess`` when set), then, when a file
    pass is set, run it from the exported file to the final one.
    """

    scheme: str                                    # "int8" | "int8-dynamic" | "fp16"
    int8_io: bool = False                          # TFLite int8: int8 inputs/outputs (else float I/O)
    tflite_quant_config: Any = None                # int8: litert-torch QuantConfig holding the PT2E quantizer
    onnx_postprocess: Callable[[Any], None] | None = None     # int8: edits the ModelProto before it is saved
    onnx_file_pass: Callable[[Path, Path], Any] | None = None      # exported .onnx -> final .onnx
    tflite_file_pass: Callable[[Path, Path], Any] | None = None    # exported .tflite -> final .tflite


@dataclass
class Artifact:
    """The model under conversion, its example inputs, data, files and report so far.

    ``variant`` names what the torch model currently is ("float" until a stage
    changes its numerics); exporters tag their files with it.
    """

    model: Any
    example_inputs: tuple
    source: dict
    variant: str = "float"
    data: Any = None                    # edgehad.data.DataSplits or None
    preprocessing: dict | None = None
    is_exported_program: bool = False
    files: list[ExportedFile] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
    sample_inputs: list[tuple] | None = None
    # the model as loaded, before any stage: teacher for distillation, baseline for latency and accuracy
    original_model: Any = None
    # its outputs on sample_inputs; a stage that adds outputs (osr) extends them
    original_outputs: list | None = None
    # names for the exported files' outputs, set by a stage that knows them (osr: logits, known_score)
    output_names: list[str] | None = None
    # modules that must stay float whatever the quantize stage is asked: name -> why (osr: the head)
    keep_float: dict[str, str] = field(default_factory=dict)
    # weights zeroed in place (element pruning): fine-tuning keeps them zero; sizes are judged compressed
    sparse_layers: list[str] = field(default_factory=list)
    quantization: QuantizationPlan | None = None


FIELDS = frozenset(f.name for f in fields(Artifact))
