"""The bundle's C name and the escaping of user strings, compiled for real.

No TFLite Micro sources are on this machine (neither PyPI nor Debian ships
them), so main.cc is compiled against ``TFLM_STUB``: declarations with the
names, types and signatures main.cc uses from TFLM's headers (TfLiteTensor,
kTfLiteOk, MicroPrintf with printf format checking, the tflite namespace,
MicroMutableOpResolver with every Add* method edgehad.micro knows). That is
enough for the compiler to see a clash of the array's name with a header,
a keyword or a generated identifier, and any code a user string injected.
The full build against a real checkout is test_bundle.py's TFLM_DIR test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgehad.bundle import c_array, names, quoting, tflm_program
from edgehad.core.errors import UserInputError

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("g++") is None,
                               reason="gcc/g++ are not installed (apt-get install g++)")

TFLM_HEADERS = ("tensorflow/lite/micro/micro_interpreter.h", "tensorflow/lite/micro/micro_log.h",
                "tensorflow/lite/micro/micro_mutable_op_resolver.h", "tensorflow/lite/micro/system_setup.h",
                "tensorflow/lite/schema/schema_generated.h")

TFLM_STUB = r"""
#ifndef EDGEHAD_TEST_TFLM_STUB_H_
#define EDGEHAD_TEST_TFLM_STUB_H_
#include <cstddef>
#include <cstdint>

typedef enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;
typedef enum { kTfLiteNoType = 0, kTfLiteFloat32 = 1, kTfLiteInt32 = 2, kTfLiteUInt8 = 3, kTfLiteInt64 = 4,
               kTfLiteString = 5, kTfLiteBool = 6, kTfLiteInt16 = 7, kTfLiteComplex64 = 8,
               kTfLiteInt8 = 9 } TfLiteType;
typedef struct TfLiteIntArray { int size; int data[4]; } TfLiteIntArray;
typedef struct TfLiteQuantizationParams { float scale; int32_t zero_point; } TfLiteQuantizationParams;
typedef union TfLitePtrUnion { int32_t* i32; float* f; uint8_t* uint8; int8_t* int8; int16_t* i16;
                               void* raw; } TfLitePtrUnion;
typedef struct TfLiteTensor { TfLiteType type; TfLitePtrUnion data; TfLiteIntArray* dims;
                              TfLiteQuantizationParams params; size_t bytes; } TfLiteTensor;
#define TFLITE_SCHEMA_VERSION (3)

__attribute__((format(printf, 1, 2))) inline void MicroPrintf(const char* format, ...) { (void)format; }

namespace flatbuffers { typedef uint32_t uoffset_t; }
namespace tflite {
struct Model { uint32_t version() const { return 3; } };
inline const Model* GetModel(const void* buf) { return static_cast<const Model*>(buf); }
inline void InitializeTarget() {}
class MicroOpResolver {};
template <unsigned int tOpCount>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
ADD_METHODS
};
class MicroInterpreter {
 public:
  MicroInterpreter(const Model* model, const MicroOpResolver& op_resolver, uint8_t* tensor_arena,
                   size_t tensor_arena_size) { (void)model; (void)op_resolver; (void)tensor_arena;
                                               (void)tensor_arena_size; }
  TfLiteStatus AllocateTensors() { return kTfLiteOk; }
  TfLiteStatus Invoke() { return kTfLiteOk; }
  size_t arena_used_bytes() const { return 0; }
  size_t inputs_size() const { return 0; }
  size_t outputs_size() const { return 0; }
  TfLiteTensor* input(size_t index) { (void)index; return nullptr; }
  TfLiteTensor* output(size_t index) { (void)index; return nullptr; }
};
}  // namespace tflite
#endif
"""

# Includes main.cc with its main() renamed, to print what its label table and the array hold.
READ_BACK = r"""
#define main edgehad_generated_main
#include "main.cc"
#undef main
#include <cstdio>
int main() {
  for (int i = 0; i < kLabelCount; ++i) {
    std::fputs(kLabels[i], stdout);
    std::fputc('\n', stdout);
  }
  std::printf("%u %u\n", static_cast<unsigned>(::SYMBOL_len), static_cast<unsigned>(::SYMBOL[0]));
  return 0;
}
"""

FLAGS_C = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
FLAGS_CXX = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti", "-I."]


def write_tflm_stub(folder: Path) -> None:
    from edgehad.micro.ops import RESOLVER_METHODS

    methods = "\n".join(f"  TfLiteStatus {m}() {{ return kTfLiteOk; }}" for m in sorted(set(RESOLVER_METHODS.values())))
    (folder / "tflm_stub.h").write_text(TFLM_STUB.replace("ADD_METHODS", methods))
    for header in TFLM_HEADERS:
        (folder / header).parent.mkdir(parents=True, exist_ok=True)
        (folder / header).write_text('#include "tflm_stub.h"\n')


def compile_c_parts(folder: Path, symbol: str) -> subprocess.CompletedProcess:
    """gcc -std=c99 on model_data.c and g++ -std=c++17 on main.cc (TFLM stubbed), -Wall -Wextra -Werror.

    Returns the first failing compiler run, else the last one.
    """
    write_tflm_stub(folder)
    proc = subprocess.run([*FLAGS_C, "-c", "model_data.c"], cwd=folder, capture_output=True, text=True)
    if proc.returncode:
        return proc
    return subprocess.run([*FLAGS_CXX, "-fsyntax-only", "main.cc"], cwd=folder, capture_output=True, text=True)


def read_back(folder: Path, symbol: str) -> tuple[list[bytes], int, int]:
    """Build main.cc (main renamed) with model_data.o; return its label strings, the array length and first byte."""
    assert compile_c_parts(folder, symbol).returncode == 0
    (folder / "read_back.cc").write_text(READ_BACK.replace("SYMBOL", symbol))
    subprocess.run([*FLAGS_CXX, "-c", "read_back.cc"], cwd=folder, check=True)
    subprocess.run(["g++", "-o", "read_back", "read_back.o", "model_data.o"], cwd=folder, check=True)
    out = subprocess.run(["./read_back"], cwd=folder, capture_output=True, check=True).stdout
    *labels, last, _ = out.split(b"\n")
    length, first = map(int, last.split())
    return labels, length, first


def code_without_comments(folder: Path, name: str) -> str:
    """The file as the compiler sees it: comments gone, directives kept (gcc -fpreprocessed -dD -E)."""
    lang = ["-x", "c++"] if name.endswith(".cc") else ["-x", "c"]
    proc = subprocess.run(["gcc", *lang, "-fpreprocessed", "-dD", "-E", "-P", name], cwd=folder,
                          capture_output=True, text=True, check=True)
    return proc.stdout


def render(folder: Path, symbol: str, source_name: str = "m.tflite", labels=None, data: bytes = b"\x1c\x00TFL3"):
    (folder / "model_data.h").write_text(c_array.render_header(symbol, data, source_name))
    (folder / "model_data.c").write_text(c_array.render_source(symbol, data, source_name))
    (folder / "main.cc").write_text(tflm_program.render_main(symbol, ["AddConv2D", "AddFullyConnected"], 4096,
                                                             "an arena note", labels, source_name))


# -- the array's name ----------------------------------------------------------

CLASHES = ["NULL", "size_t", "memset", "tflite", "kArenaSize", "g_arena", "EDGEHAD_ALIGNED", "uint8_t",
           "TfLiteTensor", "kTfLiteOk", "kLabels", "FillZeros"]


@needs_gcc
@pytest.mark.parametrize("name", CLASHES)
def test_clashing_names_break_the_build_and_are_refused(name, tmp_path):
    """Each refused name really breaks the generated C/C++ (so the stub sees what TFLM's headers would)."""
    render(tmp_path, name)
    assert compile_c_parts(tmp_path, name).returncode != 0
    with pytest.raises(UserInputError, match=rf"^`name` '{name}' would clash with .*: pick another name \(e\.g\. "
                                             rf"g_{name}\)$"):
        names.check_symbol(name)


@needs_gcc
@pytest.mark.parametrize("stem, symbol", [
    ("tflite", "g_tflite"), ("size_t", "g_size_t"), ("NULL", "g_NULL"), ("memset", "g_memset"),
    ("kArenaSize", "g_kArenaSize"), ("g_arena", "g_g_arena"), ("EDGEHAD_ALIGNED", "g_EDGEHAD_ALIGNED"),
    ("int8_t", "g_int8_t"), ("a__b", "a_b"), ("model", "model"), ("static", "g_static"),
])
def test_names_from_file_names_build(stem, symbol, tmp_path):
    """A file named like a clash gets a prefixed name, and the C and C++ build with it and read the array."""
    assert names.symbol_from_filename(stem) == symbol
    assert names.check_symbol(symbol) == symbol
    render(tmp_path, symbol, labels=["a", "b"])
    labels, length, first = read_back(tmp_path, symbol)
    assert (labels, length, first) == ([b"a", b"b"], 6, 0x1c)


def test_model_is_not_hidden_by_the_local_of_main(tmp_path):
    """model.tflite gives the array 'model', the name of main()'s local: main.cc names the array ::model."""
    render(tmp_path, "model")
    main_cc = (tmp_path / "main.cc").read_text()
    assert "const tflite::Model* model = tflite::GetModel(::model);" in main_cc


@pytest.mark.parametrize("name, message", [
    ("NULL", "would clash with NULL from the C/C++ or TFLite Micro headers"),
    ("INT8_MAX", "would clash with INT8_MAX from the C/C++"),
    ("std", "would clash with std from"),
    ("g_arena", "would clash with g_arena, which the bundle's main.cc or model_data.c defines"),
    ("main", "would clash with the program's main()"),
    ("MicroPrintf", "would clash with MicroPrintf from"),
    ("EDGEHAD_ALIGNED_PREFIX", "would clash with EDGEHAD_ALIGNED_PREFIX, which the bundle"),
    ("EDGEHAD_X", "prefixes are taken"),
    ("a__b", "is reserved for the C/C++ implementation"),
    ("_model", "is reserved for the C/C++ implementation"),
    ("typeof", "is a C/C++ keyword"),
    ("$(shell id)", "is not a C identifier"),
    ("x\nint y", "is not a C identifier"),
    ("", "is not a C identifier"),
])
def test_bad_names_say_why_and_suggest_one(name, message):
    with pytest.raises(UserInputError) as e:
        names.check_symbol(name)
    text = str(e.value)
    assert message in text and "\n" not in text
    suggestion = re.search(r"\(e\.g\. (\w+)\)$", text)[1]
    assert names.check_symbol(suggestion) == suggestion


# -- escaping --------------------------------------------------------------------

NASTY = ["m\nstatic int injected_line = 1;\n#define X", "a */ int injected_line; /*", "tail\\", "q??/",
         'say "hi"', "$(shell touch pwned)", "é\u202eü", "nul\x00", "\udcff raw byte", "tab\there", "`code`"]


@needs_gcc
def test_c_comment_keeps_every_string_inside_the_comment(tmp_path):
    lines = []
    for text in NASTY:
        lines += [f"// {quoting.c_comment(text)}", f"/* {quoting.c_comment(text)} */"]
    (tmp_path / "c.c").write_text("\n".join(lines) + "\nint edgehad_only_declaration;\n")
    proc = subprocess.run([*FLAGS_C, "-Wcomment", "-Wtrigraphs", "-c", "c.c"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert code_without_comments(tmp_path, "c.c").split() == ["int", "edgehad_only_declaration;"]


@needs_gcc
def test_c_string_holds_the_exact_utf8_bytes(tmp_path):
    rows = ",\n".join(quoting.c_string(t) for t in NASTY)
    (tmp_path / "s.c").write_text(
        "#include <stdio.h>\n#include <string.h>\n"
        f"static const char* const k[] = {{\n{rows}\n}};\n"
        "int main(void) { size_t i; for (i = 0; i < sizeof k / sizeof k[0]; ++i) "
        "{ fwrite(k[i], 1, strlen(k[i]), stdout); fputc(0x1e, stdout); } return 0; }\n")
    for std in ("-std=c99", "-std=c89"):  # c89 and c99 keep trigraphs: '??/' must not become '\'
        subprocess.run(["gcc", std, "-Wall", "-Werror", "-o", "s", "s.c"], cwd=tmp_path, check=True)
        out = subprocess.run(["./s"], cwd=tmp_path, capture_output=True, check=True).stdout
        # C strings end at NUL: the NUL label reads back up to it
        want = [t.encode("utf-8", "surrogateescape").split(b"\x00")[0] for t in NASTY]
        assert out.split(b"\x1e")[:-1] == want


def test_markdown_text_and_code_stay_literal():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark")
    for text in NASTY + ["# heading", "1. one", "- item", "<b>x</b>", "[l](http://x)", "*em*", "```", "&amp;"]:
        shown = "".join(quoting._visible(c) for c in text)
        for render_, kind in ((quoting.md_text, "text"), (quoting.md_code, "code_inline")):
            source = f"- {render_(text)}\n"
            tokens = md.parse(source)
            assert [t.type for t in tokens] == ["bullet_list_open", "list_item_open", "paragraph_open", "inline",
                                                "paragraph_close", "list_item_close", "bullet_list_close"], source
            children = tokens[3].children
            assert {c.type for c in children} == {kind}, source
            assert "".join(c.content for c in children) == (shown if kind == "code_inline" else shown), source


@needs_gcc
def test_labels_in_main_cc_read_back_byte_for_byte(tmp_path):
    labels = [t for t in NASTY if "\n" not in t and "\x00" not in t]
    render(tmp_path, "g_model", source_name=NASTY[0], labels=labels)
    got, _, _ = read_back(tmp_path, "g_model")
    assert got == [t.encode("utf-8", "surrogateescape") for t in labels]
    for name in ("main.cc", "model_data.c", "model_data.h"):  # the file name, in comments, injected nothing
        code = code_without_comments(tmp_path, name)
        assert "static int injected_line" not in code and "#define X" not in code
