"""A file's symbolic dims are never guessed (issue #15, "Inputs for files").

Real ONNX files built with onnx.helper: a detector-like conv net whose input is [batch, 3, height, width],
the same net with static input dims, and a streaming audio model with three inputs (a float chunk
[batch, 512], an int64 scalar sample rate, a recurrent state [2, batch, 128]). Everything runs in
onnxruntime for real; the CLI cases are in tests/e2e/test_file_inputs.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgehad import api
from edgehad.core.errors import UserInputError
from edgehad.inspection import inspect_file
from edgehad.runtime import InputsError, RunError, Session

RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)   # conv 3 -> 8, 3x3, pad 1
W2 = RNG.standard_normal((4, 8, 1, 1)).astype(np.float32)   # conv 8 -> 4, 1x1
WA = RNG.standard_normal((512, 128)).astype(np.float32)      # the audio model's chunk -> state projection


def det_macs(n, h, w):
    """Both convs keep the spatial size: outputs x (C_in * k * k) each."""
    return n * h * w * (8 * 27 + 4 * 8)


def _save(model, path):
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector(path, shape=("batch", 3, "height", "width")):
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    out = [shape[0], 4, shape[2], shape[3]]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w1"], ["a"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["a"], ["r"]),
         helper.make_node("Conv", ["r", "w2"], ["boxes"])],
        "det", [helper.make_tensor_value_info("images", T.FLOAT, list(shape))],
        [helper.make_tensor_value_info("boxes", T.FLOAT, out)],
        [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(W2, "w2")])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)


def streaming(path):
    """level = mean of the chunk reshaped to [-1, sr] (fails unless sr divides it); new_state = state + chunk @ W."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    consts = [numpy_helper.from_array(WA, "W"), numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
              numpy_helper.from_array(np.array([0], np.int64), "ax0"),
              numpy_helper.from_array(np.array([1], np.int64), "ax1")]
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["sr", "ax0"], ["sr1"]),
         helper.make_node("Concat", ["minus1", "sr1"], ["shape"], axis=0),
         helper.make_node("Reshape", ["chunk", "shape"], ["r"]),
         helper.make_node("ReduceMean", ["r", "ax1"], ["level"], keepdims=0),
         helper.make_node("MatMul", ["chunk", "W"], ["h"]),
         helper.make_node("Add", ["state", "h"], ["new_state"])],
        "stream",
        [helper.make_tensor_value_info("chunk", T.FLOAT, ["batch", 512]),
         helper.make_tensor_value_info("sr", T.INT64, []),
         helper.make_tensor_value_info("state", T.FLOAT, [2, "batch", 128])],
        [helper.make_tensor_value_info("level", T.FLOAT, ["n"]),
         helper.make_tensor_value_info("new_state", T.FLOAT, [2, "batch", 128])],
        consts)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("file-inputs")
    return {"det": detector(d / "det.onnx"), "static": detector(d / "det_static.onnx", (1, 3, 64, 48)),
            "audio": streaming(d / "audio.onnx"), "dir": d}


def audio_arrays(batch=1, sr=16):
    rng = np.random.default_rng(1)
    return {"chunk": rng.standard_normal((batch, 512)).astype(np.float32), "sr": np.array(sr, np.int64),
            "state": rng.standard_normal((2, batch, 128)).astype(np.float32)}


# -- inspect: MACs at the stated shapes, never at guessed ones ------------------------------------------------------
def test_every_symbolic_dim_is_named(files):
    with pytest.raises(UserInputError) as err:
        api.inspect(files["det"])
    assert str(err.value) == (f"{files['det']} has symbolic dims: images[0]=batch, images[2]=height, "
                              f"images[3]=width; give them with `input_shape` (e.g. images=1x3x16x16) or "
                              f"`inputs` (an .npz of arrays by input name)")
    with pytest.raises(UserInputError, match=r"audio.onnx has symbolic dims: chunk\[0\]=batch, state\[1\]=batch;"):
        api.inspect(files["audio"])


def test_macs_at_the_stated_shape_equal_the_static_file(files):
    static = api.inspect(files["static"])
    assert static["macs"] == det_macs(1, 64, 48) and static["input_shapes"] == {"images": [1, 3, 64, 48]}
    for given in ("images=1x3x64x48", "1x3x64x48", (1, 3, 64, 48), ["images=1x3x64x48"], {"images": "1x3x64x48"}):
        info = api.inspect(files["det"], input_shape=given)
        assert info["macs"] == static["macs"], given
        assert info["input_shapes"] == {"images": [1, 3, 64, 48]}
        assert info["inputs"][0]["shape"] == ["batch", 3, "height", "width"]  # the file's own, as declared
        assert info["notes"] == []
    assert api.inspect(files["det"], input_shape="images=2x3x640x480")["macs"] == det_macs(2, 640, 480)


def test_a_library_caller_gets_no_macs_and_a_note(files):
    info = inspect_file(files["det"])  # bundle and friends read the rest of the summary
    assert info["macs"] is None and info["input_shapes"] is None
    assert info["notes"][0].startswith(f"MACs not computed: {files['det']} has symbolic dims: images[0]=batch")


def test_a_dim_named_in_two_inputs_takes_one_size(files):
    info = api.inspect(files["audio"], input_shape="chunk=3x512")  # state's batch follows chunk's
    assert info["input_shapes"] == {"chunk": [3, 512], "sr": [], "state": [2, 3, 128]}
    assert info["macs"] == 3 * 512 * 128
    with pytest.raises(UserInputError, match=r"dim batch is 3 in chunk\[0\] but 2 in state\[1\]; one name, one size"):
        api.inspect(files["audio"], input_shape=["chunk=3x512", "state=2x2x128"])


@pytest.mark.parametrize("given, message", [
    ("x=1x3x8x8", "`input_shape` x=1x3x8x8: {det} has no input 'x'; its inputs: images"),
    ("1x4x8x8", "`input_shape` gives images the shape 1x4x8x8, which does not fit {det}: its input images is "
                "batchx3xheightxwidth and only symbolic dims can be chosen"),
    ("images=1x3x8", "`input_shape` gives images the shape 1x3x8, which does not fit"),
    ("images=1x3xHx8", "`input_shape` images=1x3xHx8: '1x3xhx8' is not a shape; write whole numbers >= 1"),
    ("images=0x3x8x8", "'0x3x8x8' is not a shape"),
    (["images=1x3x8x8", "images=2x3x8x8"], "`input_shape` gives input images twice: give each input once"),
    ([1.5, 2], "`input_shape` 1.5: give NAME=1x3x224x224"),
])
def test_shapes_that_do_not_fit_are_refused(files, given, message):
    with pytest.raises(UserInputError) as err:
        api.inspect(files["det"], input_shape=given)
    assert message.format(det=files["det"]) in str(err.value)


def test_a_bare_shape_needs_a_one_input_file(files):
    with pytest.raises(UserInputError) as err:
        api.inspect(files["audio"], input_shape="1x512")
    assert str(err.value) == (f"`input_shape` 1x512: {files['audio']} has 3 inputs (chunk, sr, state); name the "
                              f"input each shape is for, e.g. `input_shape` chunk=1x512")


# -- inputs: arrays by input name, checked against the file ---------------------------------------------------------
def test_inputs_npz_fills_the_dims(files, tmp_path):
    np.savez(tmp_path / "in.npz", **audio_arrays(batch=2))
    info = api.inspect(files["audio"], inputs=str(tmp_path / "in.npz"))
    assert info["input_shapes"] == {"chunk": [2, 512], "sr": [], "state": [2, 2, 128]}
    assert info["macs"] == 2 * 512 * 128


def _saved(tmp_path, arrays):
    np.savez(tmp_path / "bad.npz", **arrays)
    return str(tmp_path / "bad.npz")


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("sr"), "{npz} has no array for input(s) sr of {audio}: give one array per input, named for it"),
    (lambda a: a.update(extra=np.zeros(1)), "{npz} holds 'extra', which {audio} has no input named; its inputs: "
                                            "chunk, sr, state"),
    (lambda a: a.update(chunk=a["chunk"].astype(np.float64)), "{npz}: chunk is float64 but {audio} takes float32 "
                                                               "there; save it as float32"),
    (lambda a: a.update(sr=np.array(16, np.int32)), "{npz}: sr is int32 but {audio} takes int64 there"),
    (lambda a: a.update(chunk=np.zeros((1, 500), np.float32)), "{npz}'s array gives chunk the shape 1x500, which "
                                                                "does not fit {audio}: its input chunk is batchx512"),
    (lambda a: a.update(state=np.zeros((2, 2, 128), np.float32)), "dim batch is 1 in chunk[0] but 2 in state[1]"),
])
def test_an_npz_that_does_not_fit_is_named(files, tmp_path, change, message):
    arrays = audio_arrays()
    change(arrays)
    npz = _saved(tmp_path, arrays)
    with pytest.raises(UserInputError) as err:
        api.inspect(files["audio"], inputs=npz)
    assert message.format(npz=npz, audio=files["audio"]) in str(err.value)


def test_an_npz_is_never_unpickled(files, tmp_path):
    objects = _saved(tmp_path, {"chunk": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(UserInputError, match="an array cannot be read .*allow_pickle=False"):
        api.inspect(files["audio"], inputs=objects)
    (tmp_path / "notes.npz").write_text("not a zip")
    with pytest.raises(UserInputError, match=r"notes.npz is not a readable .npz of arrays"):
        api.inspect(files["audio"], inputs=str(tmp_path / "notes.npz"))
    with pytest.raises(UserInputError, match=r"missing.npz: no such file"):
        api.inspect(files["audio"], inputs=str(tmp_path / "missing.npz"))
    with pytest.raises(UserInputError, match="`inputs` goes with a .onnx or .tflite file"):
        api.inspect("zoo:digits_cnn", inputs=objects)


# -- Session: the same rules; the arrays given are what runs ----------------------------------------------------------
def test_session_runs_the_arrays_given(files, tmp_path):
    arrays = audio_arrays(batch=2)
    np.savez(tmp_path / "in.npz", **arrays)
    sess = Session(str(files["audio"]), threads=1, inputs=str(tmp_path / "in.npz"))
    assert [(i["name"], i["shape"]) for i in sess.inputs] == [("chunk", [2, 512]), ("sr", []), ("state", [2, 2, 128])]
    level, new_state = sess.run()
    np.testing.assert_allclose(new_state, arrays["state"] + arrays["chunk"] @ WA, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(level, arrays["chunk"].reshape(-1, 16).mean(1), rtol=1e-5, atol=1e-6)


def test_session_runtime_failure_is_one_line(files):
    sess = Session(str(files["audio"]), threads=1, inputs=audio_arrays(sr=16000))  # 512 samples are no 16000-row
    with pytest.raises(RunError) as err:
        sess.run()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{files['audio']}: ort failed running it on chunk: float32 1x512, sr: int64 scalar, "
                              f"state: float32 2x1x128: [ONNXRuntimeError]")
    assert "Reshape node" in message


def test_session_states_shapes_with_the_same_words(files):
    sess = Session(str(files["det"]), input_shape="images=1x3x64x48")
    assert sess.inputs[0]["shape"] == [1, 3, 64, 48] and sess.feed is None
    assert sess.run([np.zeros((1, 3, 64, 48), np.float32)])[0].shape == (1, 4, 64, 48)
    with pytest.raises(InputsError, match=r"det.onnx has symbolic dims: images\[0\]=batch, images\[2\]=height"):
        Session(str(files["det"]), input_shape={})  # given, so every dim must be filled
    with pytest.raises(ValueError, match="no arrays to run on"):
        sess.run()
    assert Session(str(files["det"])).inputs[0]["shape"] == ["batch", 3, "height", "width"]  # nothing stated


# -- profiling: the agent gets the shapes; the roofline counts at them ------------------------------------------------
def test_the_agent_never_draws_at_a_guessed_size(files):
    """The agent opens the file through edgehad_runtime's Session: a dim left symbolic is named in flag words,
    a stated one (the batch shared by two inputs included) sets the random arrays' shapes."""
    from edgehad.profiling import agent

    rt = agent.load_runtime()
    session = agent.open_session(rt, agent.parse_args([str(files["audio"])]), "ort")
    with pytest.raises(agent.AgentError) as err:
        agent.random_feed(rt, session, 0)
    assert str(err.value) == (f"{files['audio']} has symbolic dims: chunk[0]=batch, state[1]=batch; give them with "
                              f"--input-shape (e.g. chunk=1x512) or --inputs (an .npz of arrays by input name)")
    session = agent.open_session(rt, agent.parse_args([str(files["audio"]), "--input-shape", "chunk=3x512",
                                                       "--input-shape", "sr="]), "ort")
    feed = agent.random_feed(rt, session, 0)
    assert {k: (v.shape, v.dtype.name) for k, v in feed.items()} == {
        "chunk": ((3, 512), "float32"), "sr": ((), "int64"), "state": ((2, 3, 128), "float32")}
    with pytest.raises(agent.AgentError, match=r"^--input-shape boxes=1: .*audio.onnx has no input 'boxes'; "
                                               r"its inputs: chunk, sr, state"):
        agent.open_session(rt, agent.parse_args([str(files["audio"]), "--input-shape", "boxes=1"]), "ort")


def test_job_passes_the_shapes_to_the_agent():
    from edgehad.profiling.job import Job

    job = Job(input_shapes=(("images", (1, 3, 64, 48)), ("sr", ())))
    args = job.agent_args("/m/det.onnx")
    assert args[args.index("--input-shape"):args.index("--input-shape") + 4] == [
        "--input-shape", "images=1x3x64x48", "--input-shape", "sr="]


def test_roofline_at_the_measured_shapes(files):
    from edgehad.profiling.roofline import roofline
    from edgehad.targets import load_target

    target = load_target("local")
    static = roofline(files["static"], target, None, 1)
    shaped = roofline(files["det"], target, None, 1, input_shapes={"images": [1, 3, 64, 48]})
    assert shaped["macs"] == static["macs"] == det_macs(1, 64, 48)
    assert shaped["bytes"] == static["bytes"]
    assert "dynamic dims" not in shaped["note"]


def test_profile_checks_every_file_before_measuring(files):
    with pytest.raises(UserInputError, match=r"det.onnx has symbolic dims: images\[0\]=batch"):
        api.profile([files["static"], files["det"]], runs=1, warmup=0)
    with pytest.raises(UserInputError, match="give `data` or `input_shape` / `inputs`, not both"):
        api.profile(files["det"], data="digits", input_shape="1x3x8x8", runs=1)
