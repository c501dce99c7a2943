"""User strings (file names, labels, tensor and target names) made inert in generated files.

Each function returns text that, placed where its name says, can only be read
back as the same string, never as more code or markup:

- ``c_comment``: inside ``//`` or ``/* */``. A newline would end a ``//``
  comment and start a line of code, ``*/`` would end a block comment, a
  backslash (or the trigraph ``??/``, live under ``-std=c99``) at a line's end
  splices the next line into the comment. Only printable ASCII other than
  ``\\``, ``*`` and ``?`` is kept; every other byte of the UTF-8 text is
  written as ``\\xNN``.
- ``c_string``: a C/C++ string literal with the string's UTF-8 bytes.
  Octal escapes have at most three digits, so ``\\101`` followed by a digit is
  still one byte (a hex escape would swallow the digit); ``?`` is ``\\?`` so no
  trigraph forms.
- ``md_text`` / ``md_code``: Markdown text and code spans. Block structure is
  read before inline markup, so a newline could start a heading or a code
  fence whatever surrounds it: control characters are shown escaped.

File names may hold bytes that are not UTF-8 (Python reads them as
surrogates); they are written with the same escapes as the bytes they were.
"""

from __future__ import annotations

import string
import unicodedata

_COMMENT_SAFE = frozenset(string.ascii_letters + string.digits + " !\"#$%&'()+,-./:;<=>@[]^_`{|}~")
# What can start inline markup anywhere in a line (emphasis, code, links, HTML, entities, tables, strikethrough).
_MD_INLINE = frozenset("\\`*_[]<>#|!~&")
# What can open a block (heading, quote, list, fence, thematic break) at the start of a line.
_MD_LINE_START = frozenset("#>-+*=`~|")


def _utf8(text: str) -> bytes:
    """UTF-8 bytes; a surrogate from a non-UTF-8 file name is its original byte, any other lone one is kept."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no byte produced (only from the Python API)
            out += ch.encode("utf-8", "surrogatepass")
    return bytes(out)


def c_comment(text: str) -> str:
    """``text`` for a C/C++ comment: safe characters as they are, every other byte as ``\\xNN``."""
    out = []
    for ch in text:
        out.append(ch if ch in _COMMENT_SAFE else "".join(f"\\x{b:02x}" for b in _utf8(ch)))
    return "".join(out)


def c_string(text: str) -> str:
    """``text`` as a C/C++ string literal (with the quotes) holding its UTF-8 bytes."""
    out = []
    for b in _utf8(text):
        ch = chr(b)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 32 <= b < 127:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _visible(ch: str) -> str:
    """A control or format character (newline, ESC, a bidi override) as the escape that names it."""
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return "".join(f"\\x{b:02x}" for b in _utf8(ch)) if ord(ch) < 0x100 or 0xDC80 <= ord(ch) <= 0xDCFF \
            else f"\\u{ord(ch):04x}"
    return ch


def md_text(text: str) -> str:
    """``text`` as literal Markdown (CommonMark), even at a line's start or after ``- ``.

    Characters that open inline markup are backslash-escaped, as is a first
    character that could open a block (and the ``.``/``)`` of a leading
    ``1.``); control characters are shown as escapes. Other punctuation stays,
    so ordinary prose reads the same in the raw file.
    """
    out = []
    for ch in text:
        vis = _visible(ch)
        if vis != ch:
            out.append(vis.replace("\\", "\\\\"))
        else:
            out.append("\\" + ch if ch in _MD_INLINE else ch)
    if out and out[0] in _MD_LINE_START:
        out[0] = "\\" + out[0]
    digits = len(text) - len(text.lstrip(string.digits))
    if 0 < digits < len(text) and text[digits] in ".)":
        out[digits] = "\\" + out[digits]
    return "".join(out)


def md_code(text: str) -> str:
    """``text`` as a Markdown code span: a backtick run longer than any inside it, control characters shown."""
    body = "".join(_visible(ch) for ch in text)
    longest = run = 0
    for ch in body:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip(" ") else ""
    return f"{fence}{pad}{body}{pad}{fence}"
