"""Following channels through permutes, transposes and views on their way into a Linear.

torch-pruning maps a flatten ``[N, C, H, W] -> [N, C*H*W]`` as channel c ->
columns ``c*H*W ... (c+1)*H*W - 1`` and treats permute and transpose as
element-wise. After a channels-last flatten, ``x.permute(0, 3, 2, 1).reshape(N, -1)``
(MTCNN's ONet, Caffe ports, TF-trained heads), channel c sits at the columns
``(w*H + h)*C + c`` instead, and compaction would delete the wrong columns of
the Linear.

Here the chain of data-movement ops between the channels' last real op and the
Linear (permute, transpose, clone/contiguous, view/reshape/flatten) is replayed
on a tensor that holds, at every position, the index of the channel it belongs
to; where the tags land is where the channels land. Shapes come from autograd
(a view saves its input's size; a permute's input size is its output's, permuted
back). The result replaces torch-pruning's index mapping on that chain.

A chain it cannot follow (the batch moves, or the Linear's input columns each mix
several channels) is marked on its last node; the group holding it is skipped with
a warning naming the Linear (``ChannelGroup.unfollowed``).
"""

from __future__ import annotations

import math

import torch

from edgehad.prune.groups import _REDUCTIONS

_MOVES = ("PermuteBackward", "TransposeBackward", "CloneBackward", "ViewBackward", "UnsafeViewBackward",
          "ReshapeAliasBackward", "AliasBackward")
_VIEWS = ("ViewBackward", "UnsafeViewBackward", "ReshapeAliasBackward")


class ChannelColumns:
    """torch-pruning index mapping: channel c -> the columns it lands in (``reverse``: column -> its channel)."""

    def __init__(self, channel_of: list[int], reverse: bool = False):
        self.channel_of = channel_of
        self.columns: dict[int, list[int]] = {}
        for k, c in enumerate(channel_of):
            self.columns.setdefault(c, []).append(k)
        self.reverse = reverse

    def __call__(self, idxs):
        from torch_pruning._helpers import _HybridIndex

        if self.reverse:
            return list(dict.fromkeys(_HybridIndex(idx=self.channel_of[i.idx], root_idx=i.root_idx) for i in idxs))
        return [_HybridIndex(idx=k, root_idx=i.root_idx) for i in idxs for k in self.columns.get(i.idx, ())]


def _name(node) -> str:
    fn = node.grad_fn
    return fn.name() if fn is not None and hasattr(fn, "name") else ""


def _is_move(node) -> bool:
    """A data-movement op of the functional kind (a module's node can carry a view's grad_fn too)."""
    import torch_pruning as tp

    types = tp.ops.OPTYPE
    return node.type in (types.ELEMENTWISE, types.RESHAPE) and _name(node).startswith(_MOVES)


def _dim(d: int, rank: int) -> int:
    return (d - 2 ** 64 if d >= 2 ** 63 else d) % rank  # autograd stores a negative dim as unsigned


def _linear_readers(graph, node) -> list | None:
    """The Linear layers that read ``node``'s output as their input features, or None if anything else does."""
    import torch_pruning as tp

    types = tp.ops.OPTYPE
    found, stack, seen = [], list(node.outputs), set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.type == types.LINEAR:
            found.append(n)
        elif _name(n).startswith(("AddmmBackward", "MmBackward")) and n.outputs and all(
                o.type == types.LINEAR for o in n.outputs):
            found.extend(n.outputs)  # a Linear on [N, T, C]: view to [N*T, C], addmm, view back
        elif (n.type in (types.ELEMENTWISE, types.BN, types.PRELU) and len(n.inputs) == 1 and not _is_move(n)
              and not _name(n).startswith(_REDUCTIONS)):
            stack.extend(n.outputs)  # activations, BatchNorm1d, PReLU over the flat features: columns unchanged
        else:
            return None
    return found or None


def follow_channel_order(graph) -> None:
    """Set the exact index mapping on every chain of data-movement ops from conv features into a Linear."""
    import torch_pruning as tp

    from torch_pruning.dependency import shape_infer

    for end in list(graph.module2node.values()):
        if end.type != tp.ops.OPTYPE.RESHAPE or not _name(end).startswith(_VIEWS):
            continue
        if any(_is_move(o) for o in end.outputs):
            continue  # not the last op of its chain
        readers = _linear_readers(graph, end)
        if not readers:
            continue
        chain = [end]  # last op first
        while len(chain[-1].inputs) == 1 and _is_move(chain[-1].inputs[0]) and len(chain[-1].inputs[0].outputs) == 1:
            chain.append(chain[-1].inputs[0])
        if len(chain[-1].inputs) != 1:
            continue
        origin = chain[-1].inputs[0]
        chain.reverse()  # forward order now
        try:
            shapes = _input_shapes(chain)
        except (AttributeError, ValueError):
            continue  # a size autograd did not save: leave torch-pruning's mapping (the trial checks it)
        channels = shape_infer.infer_out_channels_recursively(graph, origin, [0])
        first = shapes[0]
        if channels is None or len(first) not in (3, 4, 5) or first[1] != channels or (
                len(first) == 3 and first[2] == channels):
            continue  # not conv features with channels on dim 1 (a Linear's [N, T, C] has them last): not ours
        features = {r.module.in_features for r in readers}
        channel_of, why = _replay(chain, shapes, features)
        if why:
            end.edgehad_unfollowed = (readers, why)
            continue
        _install(graph, [origin, *chain], channel_of)


def _input_shapes(chain) -> list[tuple]:
    """The size of each op's input, in forward order, from the last op's saved input size back."""
    shape = tuple(int(s) for s in chain[-1].grad_fn._saved_self_sym_sizes)
    shapes = [shape]
    for node in reversed(chain[:-1]):
        name, fn = _name(node), node.grad_fn
        if name.startswith(_VIEWS):
            shape = tuple(int(s) for s in fn._saved_self_sym_sizes)
        elif name.startswith("PermuteBackward"):
            dims = [_dim(d, len(shape)) for d in fn._saved_dims]
            before = [0] * len(shape)
            for i, d in enumerate(dims):
                before[d] = shape[i]
            shape = tuple(before)
        elif name.startswith("TransposeBackward"):
            a, b = _dim(fn._saved_dim0, len(shape)), _dim(fn._saved_dim1, len(shape))
            before = list(shape)
            before[a], before[b] = before[b], before[a]
            shape = tuple(before)
        shapes.append(shape)
    shapes.reverse()
    return shapes


def _replay(chain, shapes, features: set[int]) -> tuple[list[int], str]:
    """Each input column's channel, or the reason the channels cannot be followed into the Linear."""
    first = shapes[0]
    tags = torch.arange(first[1]).view(1, -1, *([1] * (len(first) - 2))).expand(first).contiguous()
    for node, shape_in, shape_out in zip(chain, shapes, [*shapes[1:], None]):
        name, fn = _name(node), node.grad_fn
        if tuple(tags.shape) != shape_in:
            return [], f"sizes disagree at {name}"
        if name.startswith("PermuteBackward"):
            dims = [_dim(d, tags.dim()) for d in fn._saved_dims]
            if dims[0] != 0:
                return [], "a permute moves the batch dim"
            tags = tags.permute(dims)
        elif name.startswith("TransposeBackward"):
            a, b = _dim(fn._saved_dim0, tags.dim()), _dim(fn._saved_dim1, tags.dim())
            if 0 in (a, b):
                return [], "a transpose moves the batch dim"
            tags = tags.transpose(a, b)
        elif name.startswith(_VIEWS) and shape_out is not None:
            if shape_out[0] != first[0]:
                return [], "a view merges the batch with other dims"
            tags = tags.reshape(shape_out)
    if len(features) != 1:
        return [], f"its readers take {sorted(features)} input features"
    k = features.pop()
    per_sample = math.prod(tags.shape[1:])
    if per_sample % k:
        return [], f"{per_sample} values per sample do not split into rows of {k} features"
    rows = tags.reshape(first[0], -1)[0].view(-1, k)  # batch stays first: sample 0's values, row-major
    if not bool((rows == rows[0]).all()):
        return [], "each of its input features mixes several channels"
    return rows[0].tolist(), ""


def _install(graph, path, channel_of: list[int]) -> None:
    """Identity mappings along ``path`` (origin, ops...), the channel -> column mapping on its last edge."""
    import torch_pruning as tp

    for a, b in zip(path, path[1:]):
        last = b is path[-1]
        for src, dst, reverse in ((a, b, False), (b, a, True)):
            for dep in src.dependencies:
                if dep.target is dst:
                    dep.index_mapping[0] = ChannelColumns(channel_of, reverse) if last else None
    for node in path[1:]:
        if node.type == tp.ops.OPTYPE.RESHAPE:  # else torch-pruning recomputes its own mapping before each group
            node.type = tp.ops.OPTYPE.ELEMENTWISE
