"""The C name of the model array: checked when given (``--name``), derived when not.

The name is declared in ``model_data.h`` at file scope with ``extern "C"``
linkage, and ``main.cc`` includes that header after ``<cstdint>``,
``<cstring>`` and TensorFlow Lite Micro's headers, beside its own
identifiers. So a name must be none of:

- a C99/C11/C23 or C++ keyword (ISO/IEC 9899 6.4.1, ISO/IEC 14882 [lex.key]);
- reserved for the implementation: at file scope every name that starts with
  '_' (C99 7.1.3), and in C++ any name holding '__' ([lex.name]);
- a name the included headers declare: ``NULL``, ``size_t``, ``memset``,
  ``int8_t``, ``INT8_MAX`` ..., TFLM's ``tflite`` and ``flatbuffers``
  namespaces and its ``TfLite*`` / ``kTfLite*`` / ``TFLITE_*`` / ``Micro*``
  names;
- a name the bundle generates: ``main``, ``kArenaSize``, ``g_arena``, the
  helpers of main.cc, and the ``EDGEHAD_*`` macros of model_data.c/.h.

``NAME_len`` (the length symbol) is held to the same rules.
"""

from __future__ import annotations

import re

from edgehad.core.errors import UserInputError

# C99/C11 keywords, C23's new ones, and C++'s (alternative tokens included): the header is C and C++.
C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline int long
register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while
_Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert _Thread_local
typeof typeof_unqual _BitInt _Decimal32 _Decimal64 _Decimal128
alignas alignof and and_eq asm bitand bitor bool catch char16_t char32_t char8_t class compl concept
consteval constexpr constinit const_cast co_await co_return co_yield decltype delete dynamic_cast explicit
export false friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected
public reinterpret_cast requires static_assert static_cast template this thread_local throw true try typeid
typename using virtual wchar_t xor xor_eq
""".split())

# What main.cc and model_data.c/.h define themselves (tflm_program.py, c_array.py).
GENERATED = frozenset("""
main kArenaSize g_arena kOpCount kLabelCount kLabels FillZeros ValueAt ElementCount
EDGEHAD_ALIGNED EDGEHAD_ALIGNED_PREFIX
""".split())

# Declared by <cstdint>/<cstring> (and <cstddef>, <cstdio>, <cstdlib>, <cassert>, which TFLM's headers pull
# in) in the global namespace, as functions, types or macros.
STANDARD = frozenset("""
NULL offsetof size_t ptrdiff_t max_align_t nullptr_t std errno assert
memchr memcmp memcpy memmove memset strcat strchr strcmp strcoll strcpy strcspn strerror strlen strncat
strncmp strncpy strpbrk strrchr strspn strstr strtok strxfrm strdup strndup strnlen
printf fprintf sprintf snprintf vprintf vfprintf vsprintf vsnprintf puts fputs putchar fputc FILE EOF
stdin stdout stderr fopen fclose fread fwrite
malloc calloc realloc free abort exit atexit abs labs div
tflite flatbuffers MicroPrintf
""".split())

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# <cstdint>'s types and macros: int8_t, uint_least16_t, intptr_t, INT8_MAX, UINT64_C, SIZE_MAX ...
_STDINT = re.compile(r"(u?int(_least|_fast)?(8|16|32|64)_t|u?int(ptr|max)_t"
                     r"|U?INT(_LEAST|_FAST)?(8|16|32|64)_(MIN|MAX|C)|U?INT(PTR|MAX)_(MIN|MAX|C)"
                     r"|(SIZE|PTRDIFF|SIG_ATOMIC|WCHAR|WINT)_(MIN|MAX))\Z")
# TFLM's C API (TfLiteTensor, kTfLiteOk, TFLITE_SCHEMA_VERSION, TF_LITE_STATIC_MEMORY ...) and our macros.
_TAKEN_PREFIXES = ("TfLite", "kTfLite", "TFLITE_", "TF_LITE_", "Micro", "EDGEHAD_")


def problem(name: str) -> str | None:
    """Why ``name`` cannot name the array (a phrase), or None when it can."""
    if not _IDENTIFIER.match(name or ""):
        return "is not a C identifier: use letters, digits and '_', not starting with a digit"
    if name in C_KEYWORDS:
        return "is a C/C++ keyword"
    if name.startswith("_") or "__" in name:
        return ("is reserved for the C/C++ implementation (names starting with '_' or holding '__' are, "
                "at file scope)")
    if name == "main":
        return "would clash with the program's main()"
    for candidate in (name, f"{name}_len"):
        if candidate in GENERATED:
            return f"would clash with {candidate}, which the bundle's main.cc or model_data.c defines"
        if candidate in STANDARD or _STDINT.match(candidate):
            return f"would clash with {candidate} from the C/C++ or TFLite Micro headers main.cc includes"
        if candidate.startswith(_TAKEN_PREFIXES):
            return (f"would clash with TFLite Micro's or edgehad's names ({', '.join(_TAKEN_PREFIXES)}"
                    " prefixes are taken)")
    return None


def check_symbol(name: str) -> str:
    """``name`` if it can name the array in the bundle's C and C++, else UserInputError saying why."""
    why = problem(name)
    if why is not None:
        raise UserInputError(f"`name` {name!r} {why}: pick another name (e.g. {suggest(name)})")
    return name


def symbol_from_filename(stem: str) -> str:
    """A C identifier from a file name: ``digits-cnn.int8`` -> ``digits_cnn_int8``.

    Runs of characters other than ASCII letters and digits become one '_'
    (leading and trailing ones dropped); a name that ``problem`` refuses
    (a leading digit, a keyword, ``tflite``, ``size_t`` ...) gets a ``g_``
    prefix, TFLM's own convention for model arrays (``g_model``), until it
    is accepted.
    """
    name = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_") or "model"
    while problem(name) is not None:
        name = f"g_{name}"
    return name


def suggest(name: str) -> str:
    """An accepted name close to ``name``, for error messages."""
    derived = symbol_from_filename(name or "model")
    return derived if derived != name else "g_model"
