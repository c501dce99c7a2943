"""Which TFLite Micro kernels a model needs: its op list and the op-resolver calls for it.

A TFLM application registers the kernels it links in a
``tflite::MicroMutableOpResolver<N>``, one ``Add*()`` call per op kind; an op
without a registration fails at ``AllocateTensors`` ("Didn't find op for
builtin opcode"). ``RESOLVER_METHODS`` maps TFLite's op names (the
``BuiltinOperator`` enum spelling, ``CUSTOM:<name>`` for custom ops) to those
methods. It was read off ``tensorflow/lite/micro/micro_mutable_op_resolver.h``
of tensorflow/tflite-micro at commit 90b983c2b3f1 (2026-08-20): every
``Add*`` method there, with the ``BuiltinOperator_*`` it registers, or for
``AddCustom`` wrappers the custom name it registers. Written out by hand
because neither the tflite-micro wheel nor any other package exposes the
list; when TFLM gains a kernel, add its line here.

    model_ops("m.tflite")            -> ["CONV_2D", "FULLY_CONNECTED", ...]
    resolver_entries(ops)            -> ["AddConv2D", "AddFullyConnected", ...]
    unsupported_ops(ops)             -> ops with no Add* method (TFLM has no kernel)
"""

from __future__ import annotations

import os

# op name (TFLite BuiltinOperator spelling) -> MicroMutableOpResolver method that registers its kernel
RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "CUSTOM:CIRCULAR_BUFFER": "AddCircularBuffer",
    "CUSTOM:SignalDelay": "AddDelay", "CUSTOM:SignalEnergy": "AddEnergy",
    "CUSTOM:SignalFftAutoScale": "AddFftAutoScale", "CUSTOM:SignalFilterBank": "AddFilterBank",
    "CUSTOM:SignalFilterBankLog": "AddFilterBankLog",
    "CUSTOM:SignalFilterBankSpectralSubtraction": "AddFilterBankSpectralSubtraction",
    "CUSTOM:SignalFilterBankSquareRoot": "AddFilterBankSquareRoot", "CUSTOM:SignalFramer": "AddFramer",
    "CUSTOM:SignalIrfft": "AddIrfft", "CUSTOM:SignalOverlapAdd": "AddOverlapAdd",
    "CUSTOM:SignalPCAN": "AddPCAN", "CUSTOM:SignalRfft": "AddRfft", "CUSTOM:SignalStacker": "AddStacker",
    "CUSTOM:SignalWindow": "AddWindow", "CUSTOM:TFLM_DECODE": "AddDecode",
    "CUSTOM:TFLite_Detection_PostProcess": "AddDetectionPostprocess", "CUSTOM:ethos-u": "AddEthosU",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv", "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth", "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}


def model_ops(path: str | os.PathLike) -> list[str]:
    """The op kinds a .tflite file uses, over all its subgraphs: sorted, unique.

    Read from the flatbuffer by edgehad.inspection (no interpreter, so a corrupt
    file raises UserInputError instead of crashing); custom ops read ``CUSTOM:<name>``.
    """
    from edgehad.inspection.tflite_file import inspect_tflite

    return sorted(inspect_tflite(path)["ops"])


def resolver_entries(ops) -> list[str]:
    """The ``MicroMutableOpResolver`` methods to call for ``ops``, in the order of ``ops``, unique.

    Ops TFLM has no kernel for are left out: see unsupported_ops.
    """
    entries = []
    for op in ops:
        method = RESOLVER_METHODS.get(op)
        if method and method not in entries:
            entries.append(method)
    return entries


def unsupported_ops(ops) -> list[str]:
    """The ops of ``ops`` that TFLM has no kernel (no ``Add*`` method) for, sorted, unique."""
    return sorted({op for op in ops if op not in RESOLVER_METHODS})
