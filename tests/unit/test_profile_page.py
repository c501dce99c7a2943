"""The HTML report (profiling/html.py) of a real profile run, in process: a one-op .onnx file profiled for real.

The browser checks (drawn plots, layout) are tests/e2e/test_profile_report.py, in the slow lane.
"""

import html

from onnx import TensorProto, helper, save


def test_report_page_holds_the_measured_numbers(tmp_path):
    from edgehad.api import profile

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "a <b> & c.onnx"
    save(model, path)
    (result,) = profile([path], runs=20, warmup=2, op_profile=True, report=tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert html.escape("a <b> & c.onnx") in page and "a <b> & c.onnx" not in page  # names are escaped
    assert 'id="latency-histogram"' in page and "<svg" in page
    assert result["latency_ms"]["p50"] > 0
