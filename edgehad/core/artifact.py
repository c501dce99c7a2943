"""The thing a pipeline passes from stage to stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    def to_report(self, out_dir: Path | None = None) -> dict:
        name = self.final_name or self.path.name
        where = (out_dir / name) if out_dir is not None else self.path
        return {
            "format": self.format, "variant": self.variant, "stage": self.stage,
            "path": str(where), "size_bytes": self.path.stat().st_size if self.path.exists() else None,
            "parity": self.parity,
        }


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
    extra: dict = field(default_factory=dict)
