"""Coupled channel groups: the channels that must be removed together.

A channel produced by a conv is read by BatchNorm, depthwise convs, residual
adds, concatenations, flatten -> Linear and multiplicative gates; removing it
means removing it everywhere at once. torch-pruning's dependency graph
(Fang et al., CVPR 2023, "DepGraph: Towards Any Structural Pruning") finds
these groups by tracing autograd; edgehad uses it with three corrections:

1. Broadcast gates. torch-pruning treats every element-wise op as channel
   preserving, so a spatial gate ``sigmoid(conv_to_1(x)) * x`` ([B,1,H,W] times
   [B,C,H,W]) couples the gate's single channel with x's C channels
   (Torch-Pruning issue #510): the real C-channel group is never listed and
   pruning it fails or deletes the gate. An operand with one channel is
   broadcast, not coupled: the edge is cut, the gate conv keeps its output
   channel and still loses the input channels it reads from x.
2. Reductions over channels (``x.mean(1)``, ``amax(x, 1)``) are not element-wise
   either: their edge is cut too. Such a group is then pruned, but zeroing a
   channel and removing it give different means: ``check`` reports it inexact.
3. Channel order. A permute, transpose or view between a conv and the Linear
   reading its flattened output (``x.permute(0, 3, 2, 1).reshape(N, -1)``) is
   followed exactly (channel_order.py), or the group is marked ``unfollowed``.

Layers holding one parameter per channel go with their group
(``channel_params``): PReLU slopes (a single shared slope stays whole),
InstanceNorm and per-channel GroupNorm affines, bare per-channel parameters
(a learned scale or shift). A group is not pruned (and the report says why)
when its channels are the model's output (no layer consumes them: the
classifier output, a decoder's last layer), when a normalisation across
channels (LayerNorm, GroupNorm with fewer groups than channels) or an attention
layer reads them, or when it has no conv/linear producer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

_PRODUCER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)
_ACROSS_CHANNELS = (nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention)
_PER_CHANNEL = (nn.PReLU, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)
_REDUCTIONS = ("MeanBackward", "SumBackward", "AmaxBackward", "AminBackward", "MaxBackward", "MinBackward",
               "StdBackward", "VarBackward", "LogsumexpBackward")


@dataclass
class Member:
    """One layer's share of a group: its module, name and which of the group's channels it holds."""

    name: str
    module: nn.Module
    idxs: list[int]          # channel indices in the module's own numbering
    root_idxs: list[int]     # the same channels in the group's numbering
    params: tuple[str, ...] = ()   # channel_params only: the module's parameters indexed by these channels
    dim: int = 0                   # ... along this dim


@dataclass
class ChannelGroup:
    name: str                                  # the first conv/linear producer, for reports
    size: int
    producers: list[Member] = field(default_factory=list)   # conv/linear whose output channels these are
    norms: list[Member] = field(default_factory=list)       # BatchNorm on these channels
    consumers: list[Member] = field(default_factory=list)   # conv/linear reading them as input channels
    channel_params: list[Member] = field(default_factory=list)  # PReLU, per-channel norms and bare parameters
    reason: str = ""                           # why it is not pruned ("" when it is prunable)
    inexact: str = ""                          # why masking and removing differ, if they do
    unfollowed: str = ""                       # why its channels cannot be followed into a reader, if so
    _group: object = None                      # the torch-pruning Group (root + handler)

    @property
    def prunable(self) -> bool:
        return not self.reason

    @property
    def masked(self) -> list[Member]:
        """The layers a mask W ⊙ m goes on, so that a masked channel is exactly 0 wherever it is read."""
        return self.producers + self.norms + self.channel_params

    def describe(self) -> dict:
        return {"group": self.name, "channels": self.size,
                "layers": sorted({m.name for m in self.producers + self.norms + self.channel_params}),
                "readers": sorted({m.name for m in self.consumers}),
                **({"skipped": self.reason} if self.reason else {}),
                **({"inexact": self.inexact} if self.inexact else {})}


def build_graph(model: nn.Module, example_inputs: tuple):
    """torch-pruning's dependency graph of ``model``, with the two corrections above applied."""
    import torch
    import torch_pruning as tp

    was_training = model.training
    inputs = tuple(t.detach().clone().requires_grad_(t.is_floating_point()) for t in example_inputs)
    import warnings

    with torch.enable_grad(), warnings.catch_warnings():  # it traces autograd: frozen weights and a plain
        # input would trace nothing. Its "unwrapped parameters" warning (a bare nn.Parameter such as a
        # position embedding) is noise here: such a tensor couples with its group like any other member.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=inputs)
    model.train(was_training)  # build_dependency leaves the model in eval mode
    _cut_false_couplings(graph)
    from edgehad.prune.channel_order import follow_channel_order

    follow_channel_order(graph)
    return graph


def _cut(a, b) -> None:
    a.dependencies = [d for d in a.dependencies if d.target is not b]
    b.dependencies = [d for d in b.dependencies if d.target is not a]


def _cut_false_couplings(graph) -> None:
    import torch_pruning as tp
    from torch_pruning.dependency import shape_infer

    elementwise = tp.ops.OPTYPE.ELEMENTWISE
    nodes = list(graph.module2node.values())
    for node in nodes:
        fn = node.grad_fn
        if node.type != elementwise or fn is None or not fn.name().startswith(_REDUCTIONS):
            continue
        dims = getattr(fn, "_saved_dim", None)
        if dims is None:
            continue
        dims = dims if isinstance(dims, (tuple, list)) else (dims,)
        rank = len(getattr(fn, "_saved_self_sym_sizes", ())) or 4
        if any(d % rank == 1 for d in dims):  # reduces over the channel dim
            for source in list(node.inputs):
                source.edgehad_feeds_channel_reduction = True
                _cut(node, source)
    for node in nodes:
        if node.type != elementwise or len(node.inputs) < 2:
            continue
        channels = {src: shape_infer.infer_out_channels_recursively(graph, src, [0]) for src in node.inputs}
        if len({c for c in channels.values() if c is not None}) < 2:
            continue
        for src, c in channels.items():
            if c == 1:  # broadcast along channels: a gate, not a coupled tensor
                _cut(node, src)


def channel_groups(model: nn.Module, graph) -> list[ChannelGroup]:
    """Every coupled output-channel group of ``model``'s conv/linear layers, prunable or not."""
    names = {m: n for n, m in model.named_modules()}
    owners = {id(p): (m, n, attr) for n, m in model.named_modules() for attr, p in m.named_parameters(recurse=False)}
    found = []
    for group in graph.get_all_groups(root_module_types=_PRODUCER_TYPES):
        g = ChannelGroup(name="", size=len(group[0].idxs), _group=group)
        for item in group:
            module, handler = item.dep.target.module, item.dep.handler
            name = names.get(module)
            member = Member(name or type(module).__name__, module, list(item.idxs), list(item.root_idxs))
            unfollowed = getattr(item.dep.target, "edgehad_unfollowed", None)
            if unfollowed and not g.unfollowed:
                readers, why = unfollowed
                g.unfollowed = (f"its channels cannot be followed into "
                                f"{', '.join(repr(names.get(r.module, r.name)) for r in readers)} "
                                f"through the permute/transpose/view before it ({why})")
            if isinstance(module, nn.Parameter):
                per_channel = _bare_parameter(module, item.dep.target.pruning_dim, owners, member)
                if per_channel is not None and not any(p.module is per_channel.module and p.params == per_channel.params
                                                       for p in g.channel_params):
                    g.channel_params.append(per_channel)
                continue
            if type(module).__module__.startswith("torch_pruning"):
                continue  # torch-pruning's placeholders for functional ops
            if isinstance(module, _PER_CHANNEL) and not _groups_channels(module):
                params = _per_channel_params(module)  # none: a PReLU's single shared slope, which stays whole
                listed = any(p.module is module for p in g.channel_params)  # its in and out handlers both list it
                if (params or isinstance(module, nn.GroupNorm)) and not listed:  # compact() resets its group count
                    g.channel_params.append(Member(member.name, module, member.idxs, member.root_idxs, params))
                continue
            if isinstance(module, _ACROSS_CHANNELS) and not g.reason:
                g.reason = (f"{type(module).__name__} {name!r} reads these channels together "
                            "(removing one changes the others' outputs)")
            if graph.is_out_channel_pruning_fn(handler):
                if isinstance(module, _NORM_TYPES):
                    g.norms.append(member)
                elif isinstance(module, _PRODUCER_TYPES):
                    g.producers.append(member)
            elif graph.is_in_channel_pruning_fn(handler) and isinstance(module, _PRODUCER_TYPES):
                g.consumers.append(member)
        if not g.producers:
            continue
        g.name = g.producers[0].name
        if not g.reason and not g.consumers:
            g.reason = "no layer reads these channels: they are the model's output"
        if any(getattr(item.dep.target, "edgehad_feeds_channel_reduction", False) for item in group):
            g.inexact = "a reduction over channels reads them (the mean changes when channels go)"
        found.append(g)
    return found


def _groups_channels(module: nn.Module) -> bool:
    """A GroupNorm with fewer groups than channels normalises channels together (one group per channel does not)."""
    return isinstance(module, nn.GroupNorm) and module.num_groups != module.num_channels


def _per_channel_params(module: nn.Module) -> tuple[str, ...]:
    """A PReLU's slopes, an InstanceNorm's or per-channel GroupNorm's affine; () if it has none per channel."""
    if isinstance(module, nn.PReLU):
        return ("weight",) if module.num_parameters > 1 else ()
    return tuple(n for n in ("weight", "bias") if isinstance(getattr(module, n, None), nn.Parameter))


def _bare_parameter(param, dim, owners, member: Member) -> Member | None:
    """A per-channel vector (one value per channel along ``dim``, size 1 elsewhere) held outside any known layer.

    Only these are masked with the group: a masked channel then leaves ``x * s + b`` as 0. A
    bare matrix (``x @ W``) is sliced by torch-pruning but not masked; the trial compaction checks it.
    """
    owner = owners.get(id(param))
    if owner is None or dim is None or any(s != 1 for d, s in enumerate(param.shape) if d != dim % param.dim()):
        return None
    module, name, attr = owner
    return Member(f"{name}.{attr}" if name else attr, module, member.idxs, member.root_idxs, (attr,), dim % param.dim())
