"""Hadamard-product building blocks: modules whose output multiplies two tensors element-wise.

Each module states its formula and paper in its docstring, records which dims
of its product broadcast (``broadcast_dims``: what channel pruning must respect;
edgehad.prune.groups finds it itself in the traced graph, and the tests check
the attribute against forward), and has a cost function beside it returning
``{"params": int, "macs": int, "hadamard_mults": int}`` (convention in
``edgehad.blocks.activations``; ``macs`` agree with ``edgehad.cost``).
"""

from edgehad.blocks.activations import HardSigmoid, HardSwish, SiLU, activation_cost, make_activation
from edgehad.blocks.aft import AFTConv, AFTSimple, aft_conv_cost, aft_simple_cost
from edgehad.blocks.bilinear import LowRankBilinearPooling, low_rank_bilinear_cost
from edgehad.blocks.film import FiLM, film_cost
from edgehad.blocks.glu import GLUFeedForward, glu_cost, glu_hidden_for_mlp
from edgehad.blocks.gmlp import GMLPBlock, SpatialGatingUnit, gmlp_block_cost, spatial_gating_cost
from edgehad.blocks.partial_conv import PartialConv2d, partial_conv_cost
from edgehad.blocks.polynomial import PolynomialCCP, polynomial_ccp_cost
from edgehad.blocks.squeeze_excite import SqueezeExcite, squeeze_excite_cost

__all__ = [
    "AFTConv",
    "AFTSimple",
    "FiLM",
    "GLUFeedForward",
    "GMLPBlock",
    "HardSigmoid",
    "HardSwish",
    "LowRankBilinearPooling",
    "PartialConv2d",
    "PolynomialCCP",
    "SiLU",
    "SpatialGatingUnit",
    "SqueezeExcite",
    "activation_cost",
    "aft_conv_cost",
    "aft_simple_cost",
    "film_cost",
    "glu_cost",
    "glu_hidden_for_mlp",
    "gmlp_block_cost",
    "low_rank_bilinear_cost",
    "make_activation",
    "partial_conv_cost",
    "polynomial_ccp_cost",
    "spatial_gating_cost",
    "squeeze_excite_cost",
]
