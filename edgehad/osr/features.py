"""Feature access: the final Linear of a classifier, its input f and its output z.

COSTARR needs, per input, the penultimate features f (what enters the final
Linear) and the logits z = W f + b, and the final layer's weight W [C, D]. A
forward hook on that Linear's input gives both without changing the model.

Finding the final Linear (``find_classifier``):

1. ``classifier`` given (``--classifier NAME``): the module of that dotted name,
   which must be an ``nn.Linear``; its output is taken as the logits.
2. Otherwise, with example inputs (``model.example_inputs`` or given): one
   forward pass records every Linear's output; the last Linear whose output
   equals the model's output is the classifier. This covers a forward that
   ends in a Linear, also inside a ``Sequential(Dropout, Linear)`` head
   (``digits_cnn``'s and ``mobilenet_v2``'s ``classifier.1``): Dropout is the
   identity in eval mode and runs before the Linear.
3. Without example inputs: the last ``nn.Linear`` in module order.

When neither works (no Linear, or none produces the model's output, e.g. a
softmax or a second head follows) the error names the Linear modules so the
user can pick one with ``--classifier``.
"""

from __future__ import annotations

import numpy as np

from edgehad.core.errors import UserInputError


def _linears(model) -> list[tuple[str, object]]:
    from torch import nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and n]


def _candidates(linears) -> str:
    if not linears:
        return "the model has no nn.Linear module"
    names = [f"{n} ({m.in_features}->{m.out_features})" for n, m in linears]
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    return "Linear modules: " + ", ".join(names[-8:]) + more


def find_classifier(model, classifier: str | None = None, example_inputs=None):
    """Return ``(name, linear)``: the final ``nn.Linear`` of ``model`` (see the module docstring).

    ``classifier`` names it explicitly (dotted module path, as in
    ``model.named_modules()``). Raises ``UserInputError`` (exit 2) naming the
    candidates when the name is wrong or nothing can be found.
    """
    import torch
    from torch import nn

    linears = _linears(model)
    if classifier is not None:
        modules = dict(model.named_modules())
        if classifier not in modules or not classifier:
            raise UserInputError(f"`classifier` {classifier!r}: the model has no module of that name; {_candidates(linears)}")
        module = modules[classifier]
        if not isinstance(module, nn.Linear):
            raise UserInputError(
                f"`classifier` {classifier!r} is a {type(module).__name__}, not an nn.Linear; {_candidates(linears)}"
            )
        return classifier, module
    if not linears:
        raise UserInputError(
            "no final nn.Linear found: COSTARR needs a classifier whose logits come from a Linear layer "
            "(the model has none); name it with `classifier` MODULE if it is wrapped"
        )
    if example_inputs is None:
        example_inputs = getattr(model, "example_inputs", None)
    if example_inputs is None:
        return linears[-1]
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(_recorder(outputs, n)) for n, m in linears]
    try:
        with torch.no_grad():
            y = model(*example_inputs)
    finally:
        for h in hooks:
            h.remove()
    if isinstance(y, torch.Tensor):
        for name, module in reversed(linears):
            out = outputs.get(name)
            if out is not None and out.shape == y.shape and torch.equal(out, y):
                return name, module
    raise UserInputError(
        "no nn.Linear produces the model's output (something runs after the last Linear, or the model returns "
        f"several tensors): name the final Linear with `classifier` MODULE; {_candidates(linears)}"
    )


def _recorder(store: dict, name: str):
    def hook(module, args, output):
        store[name] = output.detach()
    return hook


def penultimate(model, name: str, x, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Features ``f`` [N, D] (the input of Linear ``name``) and logits ``z`` [N, C] (its output) for ``x``.

    ``x`` is a numpy array or tensor of inputs, run in batches of ``batch``
    under ``torch.no_grad()``; the model should be in eval mode.
    """
    import torch

    module = dict(model.named_modules())[name]
    got: dict = {}

    def hook(mod, args, output):
        got["f"] = args[0].detach()
        got["z"] = output.detach()

    x = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    fs, zs = [], []
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                got.clear()
                try:
                    model(x[i:i + batch])
                except Exception as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise UserInputError(
                        f"inputs of shape {list(x.shape[1:])} do not fit the model ({first}): check the data spec"
                    ) from exc
                if "f" not in got:
                    raise UserInputError(f"the classifier {name!r} did not run in the model's forward: pass `classifier`")
                if got["f"].ndim != 2:
                    raise UserInputError(
                        f"the input of {name!r} has shape {list(got['f'].shape)}, expected [N, D]: COSTARR needs "
                        "one feature vector per input; name a Linear that sees pooled features with `classifier`"
                    )
                fs.append(got["f"].float().numpy())
                zs.append(got["z"].float().numpy())
    finally:
        handle.remove()
    return np.concatenate(fs), np.concatenate(zs)


def classifier_weight(module) -> np.ndarray:
    """The final Linear's weight W [C, D] as float32 numpy (the bias is not used by COSTARR)."""
    return module.weight.detach().float().numpy().astype(np.float32)


__all__ = ["find_classifier", "penultimate", "classifier_weight"]
