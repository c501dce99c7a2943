"""Hypothesis against every parser of user-written settings: recipes, targets, hosts, manifests, OSR stats,
``--input-shape``, ``--model-arg``, data specs.

The property, for every input: a valid result, or UserInputError (exit 2) with a
one-line message; never another exception type, and no NaN or infinity in a
result. Parsers run in this process (each example costs milliseconds); the
number of examples and each one's time are bounded so the lane stays in budget.
"""

from __future__ import annotations

import json
import math
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgehad.core.errors import UserInputError

pytestmark = [pytest.mark.reliability, pytest.mark.slow]  # a lane of its own, not the fast lane

# No deadline (a shared machine's timings are no property); a hang is caught by HANG_S instead.
FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HANG_S = 30


class Hang(BaseException):
    """Raised in a parser that ran HANG_S seconds: a BaseException, so no ``except Exception`` there eats it."""
ROOT = Path(__file__).resolve().parents[2]
STAGES = ("rewrite", "prune", "finetune", "quantize", "export-onnx", "export-tflite", "verify", "osr")


def non_finite(value, where: str = "") -> str | None:
    """The key path of the first NaN or infinity in a nested value (dataclasses and dicts included)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc" and not np.isfinite(value).all():
        return where or "array"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    elif hasattr(value, "__dataclass_fields__"):
        items = ((k, getattr(value, k)) for k in value.__dataclass_fields__)
    else:
        return None
    for key, item in items:
        found = non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


COUNT = {"tried": 0, "clean": 0}


@pytest.fixture(autouse=True)
def _count(record_property):
    """Every parser call of the test is one case in the lane's tally (conftest.py)."""
    COUNT.update(tried=0, clean=0)
    yield
    record_property("reliability", json.dumps({**COUNT, "kind": "parser"}))


def expect_clean(fn, *args, **kwargs):
    """``fn(*args)``'s result, or None after a UserInputError with a usable message; anything else fails."""
    def hang(signum, frame):
        raise Hang(f"{fn.__name__}{args!r} ran for {HANG_S} s")

    COUNT["tried"] += 1
    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_S)
    try:
        result = fn(*args, **kwargs)
    except UserInputError as exc:
        message = str(exc)
        assert message.strip(), "a UserInputError without a message"
        assert "internal error" not in message, message
        COUNT["clean"] += 1
        return None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    bad = non_finite(result)
    assert bad is None, f"a NaN or infinity was accepted at {bad}: {result!r}"
    COUNT["clean"] += 1
    return result


# -- values as TOML and JSON hold them ------------------------------------------------------------

SPECIAL_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e-308, 0.5, 1e-12])
SCALARS = st.one_of(st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
                    st.integers(-3, 300), SPECIAL_FLOATS, st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["", "-", "auto", "int8", "data", "digits", "x" * 300]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def toml_value(v) -> str:
    """``v`` as a TOML literal (inline tables for dicts): the text a user could have written."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_tables(tables: dict) -> str:
    """``{table: {key: value}}`` as TOML text, one ``["table"]`` header per table."""
    lines = []
    for name, entries in tables.items():
        if isinstance(entries, dict):
            lines.append(f"[{json.dumps(name)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in entries.items()]
        else:
            lines.insert(0, f"{json.dumps(name)} = {toml_value(entries)}")
    return "\n".join(lines) + "\n"


LITERALS = st.sampled_from(["nan", "inf", "-inf", "+nan", "-1", "0", "1e400", "-1e400", "9223372036854775807",
                            "-9223372036854775808", "1.5", "true", "false", '"x"', '""', "[]", "{}", "[1, 2]",
                            '["a", "b"]', "{a = 1}", "1979-05-27", '"-oProxyCommand=touch MARKER"',
                            '"a b"', '"\\u0000"', "'''multi\nline'''", "0x10", "1_000"])


@st.composite
def edited_toml(draw, text: str):
    """A real TOML file with some lines edited the way a user might: a value replaced, a line dropped or
    doubled, a key added, the text cut."""
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        what = draw(st.sampled_from(["value", "value", "value", "drop", "dup", "key", "cut"]))
        line = lines[i]
        if what == "value" and "=" in line and not line.lstrip().startswith("#"):
            key = line.split("=", 1)[0]
            lines[i] = f"{key}= {draw(st.one_of(LITERALS, SCALARS.map(toml_value)))}"
        elif what == "drop":
            del lines[i]
        elif what == "dup":
            lines.insert(i, line)
        elif what == "key":
            lines.insert(i, f"{draw(st.from_regex(r'[a-z_]{1,12}', fullmatch=True))} = {draw(LITERALS)}")
        elif what == "cut":
            lines[i] = line[:draw(st.integers(0, len(line)))]
    return "\n".join(lines) + "\n"


def _real(folder: str) -> list[tuple[str, str]]:
    return [(p.name, p.read_text()) for p in sorted((ROOT / folder).glob("*.toml")) if p.name != "schema.toml"]


# -- recipes -------------------------------------------------------------------------------------

def _stage_options(name: str) -> list[str]:
    from edgehad.core.stage import get_stage

    try:
        return sorted(get_stage(name).options)
    except UserInputError:
        return []


@st.composite
def recipe_dicts(draw):
    raw = {}
    for key in draw(st.lists(st.sampled_from(["name", "description", "data", "stages", "extra", "Stages"]),
                             unique=True, max_size=4)):
        raw[key] = draw(VALUES)
    if draw(st.booleans()):
        raw["data"] = draw(st.dictionaries(st.sampled_from(["spec", "normalize", "other"]), VALUES, max_size=2))
    if draw(st.booleans()):
        stages = {}
        for name in draw(st.lists(st.sampled_from([*STAGES, "export_onnx", "nope"]), unique=True, max_size=4)):
            keys = _stage_options(name) + ["bogus"]
            stages[name] = draw(st.dictionaries(st.sampled_from(keys), VALUES, max_size=3))
        raw["stages"] = stages
    return raw


@settings(FUZZ, max_examples=100)
@given(raw=recipe_dicts())
def test_recipe_dicts(raw):
    from edgehad.core.recipe import build_stages, parse_recipe

    recipe = expect_clean(parse_recipe, raw, source="fuzz.toml")
    if recipe is not None:
        stages = expect_clean(build_stages, recipe)
        if stages is not None:
            assert non_finite([s.config for s in stages]) is None


@settings(FUZZ, max_examples=60)
@given(data=st.data(), which=st.sampled_from(_real("converters")))
def test_recipe_files(data, which):
    from edgehad.core.recipe import build_stages, load_recipe

    name, text = which
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(data.draw(edited_toml(text)))
        recipe = expect_clean(load_recipe, str(path))
    if recipe is not None:
        expect_clean(build_stages, recipe)


# -- targets ---------------------------------------------------------------------------------------

@settings(FUZZ, max_examples=60)
@given(data=st.data(), which=st.sampled_from(_real("targets")))
def test_target_files(data, which):
    from edgehad.targets import load_target

    name, text = which
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(data.draw(edited_toml(text)))
        target = expect_clean(load_target, str(path))
    if target is not None:
        for key in ("memory_bandwidth_gbs", "ram_kb"):
            if target["name"] == "local" and key not in target:  # this machine's: unknown until measured
                continue
            assert target[key] > 0, (key, target[key])


@settings(FUZZ, max_examples=60)
@given(doc=st.dictionaries(st.sampled_from(["name", "description", "runtime", "ram_kb", "memory_bandwidth_gbs",
                                            "cpu", "peak", "match", "gpu", "flash_kb", "other"]), VALUES, max_size=8))
def test_target_dicts(doc):
    from edgehad.targets import validate_target

    expect_clean(validate_target, doc, "fuzz.toml")


# -- hosts -----------------------------------------------------------------------------------------

HOST_KEYS = ["host", "user", "port", "identity_file", "python", "ssh_options", "ssh_config", "target", "proxy"]
HOSTNAMES = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True), st.text(max_size=10),
                      st.sampled_from(["-oProxyCommand=x", "a b", "pi;touch MARKER", "$(touch MARKER)", "\n"]))
HOST_VALUES = st.one_of(VALUES, HOSTNAMES, st.lists(st.one_of(
    st.sampled_from(["ProxyJump=gw", "StrictHostKeyChecking=no", "ProxyCommand=touch MARKER", "-F/x",
                     "LocalCommand=touch MARKER", "Port=2222", "UserKnownHostsFile=/dev/null"]), st.text(max_size=16)),
    max_size=3))


@FUZZ
@given(tables=st.dictionaries(HOSTNAMES, st.one_of(st.dictionaries(st.sampled_from(HOST_KEYS), HOST_VALUES,
                                                                    max_size=5), SCALARS), max_size=3))
def test_hosts_files(tables):
    from edgehad.profiling.hosts import load_hosts

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hosts.toml"
        path.write_text(toml_tables(tables))
        hosts = expect_clean(load_hosts, path)
    for host in (hosts or {}).values():
        # what reaches ssh's argv must not read as an option or hold a shell's word break
        for word in (host.address, host.user):
            assert word is None or (not word.startswith("-") and not any(c.isspace() for c in word)), host


@FUZZ
@given(spec=st.one_of(
    st.builds(lambda u, h, p: f"ssh://{u}@{h}{p}", st.text(max_size=8), HOSTNAMES,
              st.sampled_from(["", ":22", ":0", ":65536", ":-1", ":x", "/path", "?q", ":2222"])),
    st.text(max_size=30)))
def test_host_urls(spec):
    from edgehad.profiling.hosts import resolve_host

    with tempfile.TemporaryDirectory() as tmp:
        import os

        old = os.environ.get("EDGEHAD_HOSTS_FILE")
        os.environ["EDGEHAD_HOSTS_FILE"] = str(Path(tmp) / "none.toml")
        try:
            host = expect_clean(resolve_host, spec)
        finally:
            if old is None:
                del os.environ["EDGEHAD_HOSTS_FILE"]
            else:
                os.environ["EDGEHAD_HOSTS_FILE"] = old
    if host is not None:
        assert not host.address.startswith("-") and not any(c.isspace() for c in host.address), host
        assert host.port is None or 0 < host.port < 65536, host


# -- bundle manifest -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifest(seeds, tmp_path_factory):
    from edgehad.bundle import build

    out = tmp_path_factory.mktemp("manifest") / "bundle"
    return build(seeds["float.onnx"], out, warn=lambda message: None)["manifest"]


def _set_path(doc, path: list, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def _paths(doc, prefix=()):
    yield list(prefix)
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key))


@FUZZ
@given(data=st.data())
def test_manifest_documents(manifest, data):
    from edgehad.bundle import validate_manifest

    doc = json.loads(json.dumps(manifest))
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths))
        if data.draw(st.booleans()):
            _set_path(doc, path, data.draw(VALUES))
        else:
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            del parent[path[-1]]
    expect_clean(validate_manifest, doc)


@FUZZ
@given(text=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["{}", "[]", "null", "NaN", '{"schema_version": NaN}', "1e999", '"x"'])))
def test_manifest_files(text):
    from edgehad.bundle import validate_manifest

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.json"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        expect_clean(validate_manifest, path)


# -- OSR stats -------------------------------------------------------------------------------------

ARRAYS = st.one_of(
    st.sampled_from([math.nan, math.inf, -1.0, 0.0, 3.0, 1e308]).map(np.float64),
    st.integers(-3, 12).map(np.int64),
    st.sampled_from(["", "body.3", "0" * 32]).map(np.str_),
    st.tuples(st.integers(0, 4), st.integers(0, 5)).flatmap(
        lambda s: st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.uint8]).map(
            lambda t: np.full(s, 1, t))),
    st.integers(0, 5).map(lambda n: np.ones(n, bool)),
    st.integers(0, 5).map(lambda n: np.full(n, np.nan, np.float32)),
)


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(["z_min", "z_max", "mu", "eta", "known", "counts", "classifier",
                                              "fingerprint", "samples", "version"]),
                             st.one_of(ARRAYS, st.none()), max_size=4))
def test_stats_archives(seeds, edits):
    from edgehad.osr.stats import load_stats

    with np.load(seeds["stats.npz"]) as archive:
        arrays = {k: archive[k] for k in archive.files}
    for key, value in edits.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stats.npz"
        np.savez(path, **arrays)
        stats = expect_clean(load_stats, path)
    if stats is not None:
        assert stats["z_max"] > stats["z_min"]


# -- --input-shape and --model-arg -----------------------------------------------------------------

SHAPE_TEXT = st.one_of(
    st.text(alphabet="0123456789x,:-+ .eE_", max_size=16),
    st.builds(lambda dims, dtype: "x".join(dims) + dtype,
              st.lists(st.sampled_from(["1", "3", "8", "0", "-1", "", " 2", "1e3", "99999999999", "²", "٣"]),
                       max_size=5),
              st.sampled_from(["", ":int64", ":float16", ":bool", ":uint8", ":complex", ":", ":FLOAT32"])),
    st.text(max_size=12))


@FUZZ
@given(text=SHAPE_TEXT)
def test_input_shape(text):
    from edgehad.loading import parse_input_shape

    parsed = expect_clean(parse_input_shape, text)
    if parsed is not None:
        shape, dtype = parsed
        assert shape and all(isinstance(d, int) and d > 0 for d in shape), parsed
        assert isinstance(dtype, str)


@FUZZ
@given(pairs=st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["width", "classes", "gate", "x", "1bad", "", "a-b"]),
              st.one_of(LITERALS, SCALARS.map(toml_value), st.text(max_size=8))),
    st.text(max_size=12)), max_size=4))
def test_model_args(pairs):
    from edgehad.loading import parse_model_args

    args = expect_clean(parse_model_args, pairs)
    if args is not None:
        assert all(k.isidentifier() for k in args), args


# -- data specs ------------------------------------------------------------------------------------

DIGIT_QUERY = st.lists(st.tuples(
    st.sampled_from(["size", "channels", "classes", "batch", "", "size "]),
    st.one_of(st.sampled_from(["8", "12", "1", "3", "0", "-1", "0-5", "7,3", "5-2", "0,0", "10", "a", "", "nan",
                               "1e3", "3.5", "0-9", "1-"]), st.text(alphabet="0123456789-,", max_size=5))),
    max_size=3).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))


@settings(FUZZ, max_examples=50)
@given(spec=st.one_of(DIGIT_QUERY.map(lambda q: f"digits?{q}"), st.text(max_size=20),
                      st.sampled_from(["digits?", "digits?size", "digits?&&", "digits?size=8&size=9", "x.npz",
                                       ":", "os:system", "tests.conftest:run_cli"])),
       normalize=st.one_of(st.none(), st.sampled_from(["0.5,0.25", "nan,1", "0,0", "0,-1", "1/2,3", "1,inf",
                                                       "0.1/0.2/0.3,1/1/1", ",", "a,b", "1e400,1"]),
                           st.text(alphabet="0123456789.,/-naif", max_size=10)))
def test_data_specs(spec, normalize):
    from edgehad.data import load_data

    splits = expect_clean(load_data, spec, normalize=normalize)
    if splits is not None:
        assert np.isfinite(splits.train[0]).all() and np.isfinite(splits.val[0]).all()
