"""Turn a MODEL spec into a torch module with example inputs.

Specs:
- ``path/to/file.py:factory``   a factory function in a Python file
- ``package.module:factory``    a factory in an importable module
- ``zoo:NAME``                  shorthand for ``edgehad.zoo:NAME``
- ``model.pt2``                 a ``torch.export`` program (export and
                                quantization only: it cannot be rewritten or pruned)

Weights come from ``torch.load(..., weights_only=True)`` or safetensors, never
from plain pickle.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgehad.core.errors import UserInputError
from edgehad.core.imports import import_attr
from edgehad.core.memory import refuse_beyond_ram
from edgehad.core.validation import first_non_finite

_DTYPES = {
    "float32": "float32", "float": "float32", "fp32": "float32", "float16": "float16",
    "int64": "int64", "long": "int64", "int32": "int32", "int8": "int8", "uint8": "uint8",
    "bool": "bool",
}


@dataclass
class LoadedModel:
    """A model ready for the pipeline."""

    module: Any                     # torch.nn.Module (eval mode)
    example_inputs: tuple           # tuple of torch tensors, batch 1
    spec: str
    name: str
    is_exported_program: bool = False
    model_args: dict = field(default_factory=dict)
    weights: str | None = None


def parse_model_args(pairs: list[str] | tuple[str, ...] | None) -> dict:
    """``KEY=VALUE`` pairs; values are TOML literals (``0.5``, ``true``, ``"se"``).

    A value that is not a TOML literal is taken as a plain string, so
    ``gate=se`` works as well as ``gate="se"``.
    """
    args: dict = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UserInputError(f"`model_args` {pair!r} is not KEY=VALUE: write e.g. `model_args` width_mult=0.5")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        if first_non_finite(value) is not None:
            raise UserInputError(f"`model_args` {pair!r} is not a finite number: give a finite value "
                                 "(a string needs quotes, e.g. KEY='\"nan\"')")
        args[key] = value
    return args


def parse_input_shape(text: str):
    """``1x3x224x224`` or ``1x16:int64`` -> (shape tuple, numpy dtype name)."""
    shape_text, _, dtype_text = text.partition(":")
    dtype = _DTYPES.get((dtype_text or "float32").strip().lower())
    if dtype is None:
        raise UserInputError(
            f"`input_shape` {text!r}: unknown dtype {dtype_text!r}; use one of {', '.join(sorted(set(_DTYPES.values())))}"
        )
    try:
        shape = tuple(int(d) for d in re.split(r"[x,]", shape_text.strip().lower()) if d != "")
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise UserInputError(f"`input_shape` {text!r} is not a shape: write dimensions joined by 'x', e.g. 1x3x224x224")
    return shape, dtype


def make_inputs(shapes: list[str], seed: int = 0) -> tuple:
    """Seeded example tensors for ``input_shape`` values."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    tensors = []
    for text in shapes:
        shape, dtype = parse_input_shape(text)
        itemsize = torch.empty((), dtype=getattr(torch, dtype)).element_size()
        # refused here, before torch tries (and fails) to allocate it
        refuse_beyond_ram(math.prod(shape) * itemsize, f"`input_shape` {text}", "give the shape the model expects")
        if dtype.startswith("float"):
            t = torch.randn(shape, generator=gen).to(getattr(torch, dtype))
        elif dtype == "bool":
            t = torch.randint(0, 2, shape, generator=gen).bool()
        else:
            t = torch.randint(0, 10, shape, generator=gen).to(getattr(torch, dtype))
        tensors.append(t)
    return tuple(tensors)


def _import_factory(spec: str):
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise UserInputError(
            f"model spec {spec!r} is not understood: use path/to/file.py:factory, package.module:factory, zoo:NAME or a .pt2 file"
        )
    if target == "zoo":
        from edgehad import zoo

        return lambda **kw: zoo.get_model(attr, **kw), attr
    return import_attr(spec, "factory"), attr


def load_model(
    spec: str,
    *,
    model_args: dict | None = None,
    weights: str | None = None,
    input_shapes: list[str] | None = None,
) -> LoadedModel:
    """Build the model named by ``spec``, load ``weights``, and find its example inputs."""
    import torch

    model_args = dict(model_args or {})
    if spec.endswith(".pt2"):
        module, example = _load_exported_program(spec, model_args, weights)
        name, is_ep = Path(spec).stem, True
    else:
        factory, name = _import_factory(spec)
        try:
            module = factory(**model_args)
        except UserInputError:
            raise
        except TypeError as exc:
            raise UserInputError(f"factory {spec!r} does not accept these arguments ({exc}): check `model_args`") from exc
        except Exception as exc:
            raise UserInputError(f"factory {spec!r} raised {type(exc).__name__}: {exc}") from exc
        except SystemExit as exc:  # a factory must return a model, not end the process
            raise UserInputError(f"factory {spec!r} called sys.exit({exc.code!r}): it must return a torch.nn.Module") from None
        if not isinstance(module, torch.nn.Module):
            raise UserInputError(f"factory {spec!r} returned {type(module).__name__}, not a torch.nn.Module")
        example = getattr(module, "example_inputs", None)
        is_ep = False
        if weights:
            load_weights(module, weights)
    if input_shapes:
        example = make_inputs(list(input_shapes))
    if example is None:
        raise UserInputError(
            f"{spec!r} has no example_inputs attribute: pass `input_shape`, e.g. `input_shape='1x3x224x224'`"
        )
    if isinstance(example, torch.Tensor):
        example = (example,)
    example = tuple(example)
    if not is_ep:  # a torch.export program's module is already in inference form (and refuses .eval())
        module.eval()
    check_inputs_fit(module, example, spec)
    return LoadedModel(module, example, spec, name, is_ep, model_args, weights)


def check_inputs_fit(module, example: tuple, spec: str) -> None:
    """Run one forward pass; a shape mismatch becomes a clear error."""
    import torch

    try:
        with torch.no_grad():
            outputs = module(*example)
    except Exception as exc:
        shapes = ", ".join("x".join(str(d) for d in t.shape) for t in example)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserInputError(
            f"inputs of shape {shapes} do not fit {spec!r} ({first}): pass the shape the model expects with `input_shape`"
        ) from exc
    check_outputs(outputs, spec)


def check_outputs(outputs, spec: str) -> None:
    """A model must return tensors: one, or a (nested) tuple, list or dict of them."""
    import torch
    from torch.utils import _pytree

    leaves = _pytree.tree_leaves(outputs)
    wrong = [leaf for leaf in leaves if not isinstance(leaf, torch.Tensor)]
    if not leaves or wrong:
        what = "nothing" if not leaves else f"a {type(wrong[0]).__name__} ({str(wrong[0])[:40]!r})"
        raise UserInputError(
            f"{spec!r} returns {what} among its outputs: a model to convert must return a tensor, "
            "or a tuple, list or dict of tensors"
        )


def _load_exported_program(path: str, model_args: dict, weights: str | None):
    import torch

    if not Path(path).is_file():
        raise UserInputError(f"exported program {path} does not exist: check the path")
    if model_args:
        raise UserInputError(f"`model_args` does not apply to {path}: a .pt2 program is already built")
    if weights:
        raise UserInputError(f"`weights` does not apply to {path}: a .pt2 program carries its weights")
    from edgehad.core.unpickling import is_refused_pickle, no_code_from_pickles

    try:
        with no_code_from_pickles():
            program = torch.export.load(path)
    except Exception as exc:
        if is_refused_pickle(exc):
            raise UserInputError(
                f"{path} holds pickled Python objects, refused without running them: "
                "save the program with torch.export.save from plain tensors and modules"
            ) from exc
        raise UserInputError(f"{path} is not a torch.export program ({type(exc).__name__}): save it with torch.export.save") from exc
    example = None
    if getattr(program, "example_inputs", None):
        args, kwargs = program.example_inputs
        example = tuple(args)
    return program.module(), example


def load_state_dict(path: str) -> dict:
    """Read a state dict from .pt/.pth (weights_only) or .safetensors; never run pickle code."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"weights file {path} does not exist: check the path")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserInputError(f"{path} is not a valid safetensors file ({exc}): re-save it") from exc
    if suffix not in (".pt", ".pth", ".bin"):
        raise UserInputError(f"weights file {path}: unknown extension {suffix!r}; use .pt, .pth or .safetensors")
    try:
        state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses arbitrary objects: nothing was executed
        raise UserInputError(
            f"{path} is not a plain state dict (it holds pickled objects, refused without running them): "
            "save model.state_dict() with torch.save, or use safetensors"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserInputError(
            f"{path} holds a {type(state).__name__}, not a state dict of tensors: save model.state_dict()"
        )
    return state


def load_weights(module, path: str) -> None:
    """Load a state dict strictly; name the first few keys that do not match."""
    state = load_state_dict(path)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected {_first(unexpected)}")
        raise UserInputError(
            f"weights in {path} do not match the model ({'; '.join(parts)}): "
            "check that `model_args` builds the same architecture the weights were saved from"
        )
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if state[k].shape != v.shape]
    if wrong:
        raise UserInputError(f"weights in {path} have other shapes than the model: {_first(wrong)}")
    # load_state_dict would cast int64 counts into float weights (or back) without a word
    kinds = [f"{k} {state[k].dtype} vs {v.dtype}" for k, v in own.items()
             if state[k].is_floating_point() != v.is_floating_point()]
    if kinds:
        raise UserInputError(f"weights in {path} have other dtypes than the model (integer vs float): {_first(kinds)}; "
                             "re-save them from the model they belong to")
    module.load_state_dict(state, strict=True)


def _first(keys: list[str], n: int = 3) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
