"""Profiling: latency and memory of .onnx/.tflite files, each measured in its own process.

``agent.py`` is the single self-contained file that does the measuring (it is
copied to devices); ``local.py`` runs it in a fresh local subprocess per file.
"""
