"""The stage contract: named Artifact fields, declared reads/writes, export stages that do no quantization."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import edgehad
from edgehad.core.artifact import FIELDS, Artifact, QuantizationPlan
from edgehad.core.pipeline import run_pipeline
from edgehad.core.stage import Context, Stage, register, stages

PACKAGE = Path(edgehad.__file__).parent


def test_artifact_has_no_free_form_dict():
    assert "extra" not in FIELDS
    # the dicts left are report data (source, preprocessing) and one typed map (keep_float: name -> why)
    dicts = sorted(f.name for f in fields(Artifact) if str(f.type).startswith("dict"))
    assert dicts == ["keep_float", "preprocessing", "source"]


def test_every_stage_declares_artifact_fields():
    for name, cls in stages().items():
        assert set(cls.reads) <= FIELDS and set(cls.writes) <= FIELDS, name
        assert cls.reads, f"stage {name} declares nothing it reads"


def test_register_refuses_a_field_that_does_not_exist():
    class Bad(Stage):
        name = "bad-contract"
        writes = ("extra",)

    with pytest.raises(ValueError, match=r"\['extra'\], which are not Artifact fields"):
        register(Bad)
    assert "bad-contract" not in stages()


class _Undeclared(Stage):
    """Replaces ``variant`` without saying so (not registered: a test stage)."""

    name = "undeclared"
    reads = ("model",)
    writes = ("model",)

    def run(self, artifact, ctx: Context):
        artifact.variant = "changed"
        return artifact


class _Declared(_Undeclared):
    name = "declared"
    writes = ("model", "variant")

    def run(self, artifact, ctx: Context):
        ctx.record("note", {"variant": "changed"})
        return super().run(artifact, ctx)


def _artifact():
    model = torch.nn.Linear(2, 2).eval()
    return Artifact(model=model, example_inputs=(torch.zeros(1, 2),), source={}, sample_inputs=[])


def test_pipeline_refuses_a_stage_that_replaces_an_undeclared_field(tmp_path):
    with pytest.raises(RuntimeError, match=r"stage 'undeclared' replaced \['variant'\] without declaring"):
        run_pipeline(_artifact(), [_Undeclared()], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing published


def test_declared_writes_and_recorded_sections_reach_the_report(tmp_path):
    report = run_pipeline(_artifact(), [_Declared()], tmp_path / "out")
    assert report["stages"][0]["name"] == "declared"
    assert report["stages"][0]["note"] == {"variant": "changed"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "export").glob("*.py")) + sorted(PACKAGE.glob("stages/export_*.py"))
                         + [PACKAGE / "stages" / "_exporting.py"], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_exporters_import_nothing_from_quantize(path):
    assert [m for m in _imports(path) if m.startswith("edgehad.quantize")] == []


def test_quantize_stage_plans_each_scheme():
    from edgehad.quantize import dynamic, fp16
    from edgehad.quantize.float_weights import FileProbe

    quantize = stages()["quantize"]
    for scheme, onnx_pass, tflite_pass in [("int8-dynamic", dynamic.onnx_dynamic_int8, dynamic.tflite_dynamic_int8),
                                           ("fp16", fp16.onnx_fp16, fp16.tflite_fp16)]:
        artifact = quantize(scheme=scheme).run(_artifact(), Context(workdir=Path(".")))
        assert artifact.quantization == QuantizationPlan(scheme, onnx_file_pass=onnx_pass, tflite_file_pass=tflite_pass)
        assert artifact.variant == scheme
    for int8_io in (False, True):
        artifact = _artifact()
        ctx = Context(workdir=Path("."))
        artifact = quantize(scheme="int8", calib="random", calib_samples=4, int8_io=int8_io).run(artifact, ctx)
        plan = artifact.quantization
        # int8: both file steps measure what the file left in float (edgehad.quantize.float_weights) into
        # the stage's report entry; the TFLite one adds float I/O unless int8 I/O was asked for
        probe = plan.onnx_postprocess.__self__
        assert (plan.scheme, plan.int8_io, plan.onnx_postprocess.__func__, plan.tflite_file_pass.__func__) == \
            ("int8", int8_io, FileProbe.onnx, FileProbe.tflite)
        assert probe.int8_io is int8_io and probe.found is ctx.entry["quantization"]["float_weights"]
        assert plan.tflite_quant_config.pt2e_quantizer is not None and artifact.variant == "int8"


def test_the_readme_stage_table_matches_the_code():
    readme = (PACKAGE.parent / "README.md").read_text()
    table = readme.split("<!-- stage-table:", 1)[1].split("\n\n", 1)[0]
    rows = [ln.strip("|").split("|") for ln in table.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    documented = {name.strip(): (int(order), tuple(r.strip() for r in reads.split(",")),
                                 tuple(w.strip() for w in writes.split(","))) for order, name, reads, writes in rows}
    assert documented == {name: (cls.order, cls.reads, cls.writes) for name, cls in stages().items()}
