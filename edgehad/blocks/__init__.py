"""Hadamard-product building blocks: modules whose output multiplies two tensors element-wise.

Each module states its formula and paper in its docstring, records which dims
of its product broadcast (``broadcast_dims``; pruning needs it), and has a cost
function beside it returning ``{"params": int, "macs": int, "hadamard_mults": int}``
(convention in ``edgehad.blocks.activations``; ``macs`` agree with ``edgehad.cost``).
"""

from edgehad.blocks.activations import HardSigmoid, HardSwish, SiLU, activation_cost, make_activation
from edgehad.blocks.glu import GLUFeedForward, glu_cost, glu_hidden_for_mlp
from edgehad.blocks.squeeze_excite import SqueezeExcite, squeeze_excite_cost

__all__ = [
    "GLUFeedForward",
    "HardSigmoid",
    "HardSwish",
    "SiLU",
    "SqueezeExcite",
    "activation_cost",
    "glu_cost",
    "glu_hidden_for_mlp",
    "make_activation",
    "squeeze_excite_cost",
]
