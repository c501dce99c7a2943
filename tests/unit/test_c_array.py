"""The model-as-C-array files, compiled for real: gcc -Wall -Werror -std=c99, and read back by a C program."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from edgehad.bundle import c_array
from edgehad.core.errors import UserInputError

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed (apt-get install gcc)")

READER = r"""
#include <stdint.h>
#include <stdio.h>
#include "model_data.h"

/* Write the array back out and report its length and address alignment. */
int main(int argc, char** argv) {
  FILE* f;
  if (argc != 2) return 2;
  f = fopen(argv[1], "wb");
  if (!f) return 3;
  if (fwrite(SYMBOL, 1, SYMBOL_len, f) != SYMBOL_len) return 4;
  fclose(f);
  printf("%u %u\n", SYMBOL_len, (unsigned)((uintptr_t)SYMBOL % 16u));
  return 0;
}
"""


def build_and_read(tmp_path, data: bytes, symbol: str, extra_flags=()):
    (tmp_path / "model_data.h").write_text(c_array.render_header(symbol, data, "m.tflite"))
    (tmp_path / "model_data.c").write_text(c_array.render_source(symbol, data, "m.tflite"))
    (tmp_path / "reader.c").write_text(READER.replace("SYMBOL", symbol))
    flags = ["-Wall", "-Wextra", "-Werror", "-pedantic", *extra_flags]
    for src in ("model_data.c", "reader.c"):
        proc = subprocess.run(["gcc", *flags, "-c", src], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    # a stray char before the array would shift it: link the data after an odd-sized object
    (tmp_path / "pad.c").write_text("const char edgehad_test_pad[3] = {1, 2, 3};\n")
    subprocess.run(["gcc", "-c", "pad.c"], cwd=tmp_path, check=True)
    subprocess.run(["gcc", "-o", "reader", "pad.o", "reader.o", "model_data.o"], cwd=tmp_path, check=True)
    # the address check alone cannot fail on x86-64, whose ABI aligns any array of 16+ bytes; the declared
    # alignment (what the attribute gives, and what a Cortex-M toolchain relies on) is checked at compile time
    (tmp_path / "align.c").write_text(f'#include "model_data.c"\n'
                                      f"typedef char edgehad_aligned[(__alignof__({symbol}) == 16) ? 1 : -1];\n")
    proc = subprocess.run(["gcc", *flags, "-Wno-unused-local-typedefs", "-c", "align.c"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(tmp_path / "reader"), str(tmp_path / "back.bin")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    length, misalign = map(int, proc.stdout.split())
    return length, misalign, (tmp_path / "back.bin").read_bytes()


@pytest.mark.parametrize("std", ["-std=c99", "-std=c11"])
def test_compiles_and_reads_back_exact_bytes_aligned(tmp_path, std):
    data = bytes(range(256)) * 7 + b"\x00\xff\x10"  # every byte value; a length that is no multiple of 12 or 16
    length, misalign, back = build_and_read(tmp_path, data, "g_model", [std])
    assert length == len(data) == 1795
    assert back == data
    assert misalign == 0


def test_real_tflite_file_round_trips(tmp_path):
    import tflite_micro

    model = os.path.join(os.path.dirname(tflite_micro.__file__), "python", "tflite_micro", "sine_float.tflite")
    data = open(model, "rb").read()
    length, misalign, back = build_and_read(tmp_path, data, "sine_model", ["-std=c99"])
    assert (length, misalign, back) == (len(data), 0, data)


def test_header_compiles_as_cpp(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    (tmp_path / "model_data.h").write_text(c_array.render_header("g_model", b"\x01\x02", "m.tflite"))
    (tmp_path / "use.cc").write_text('#include "model_data.h"\nunsigned f() { return g_model_len + g_model[0]; }\n')
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-fsyntax-only", "use.cc"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("stem, symbol", [
    ("model", "model"), ("digits-cnn.int8", "digits_cnn_int8"), ("8bit", "g_8bit"), ("int", "g_int"),
    ("__x", "x"), ("main", "g_main"), ("résumé", "r_sum"), ("---", "model"),
])
def test_symbol_from_filename(stem, symbol):
    assert c_array.symbol_from_filename(stem) == symbol
    assert c_array.check_symbol(symbol) == symbol


@pytest.mark.parametrize("name, message", [
    ("1model", "is not a C identifier"), ("my-model", "is not a C identifier"), ("", "is not a C identifier"),
    ("a b", "is not a C identifier"), ("int", "is a C/C++ keyword"), ("class", "is a C/C++ keyword"),
    ("__model", "reserved"), ("_Model", "reserved"), ("main", "clash with the program's main()"),
])
def test_bad_symbols(name, message):
    with pytest.raises(UserInputError, match=re.escape(message)):
        c_array.check_symbol(name)
