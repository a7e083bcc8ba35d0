"""TensorFlow Lite Micro export: the tensor-arena size a step graph needs, and the model as a C header.

TFLite Micro plans every tensor of the graph into one caller-provided arena. The ``tflite_micro`` Python
interpreter (TFLite Micro's C++ runtime) has no arena-used query, so :func:`arena_size` searches the
smallest arena that allocates, in steps of :data:`ARENA_GRANULARITY_BYTES` (TFLite Micro's buffer
alignment). The figure is measured on the 64-bit host with the interpreter's recording allocator; a
32-bit device stores smaller pointers, so it is an upper bound there only if the firmware uses the same
TFLite Micro version and kernels; keep a margin.
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np

from edgensd.log import logger
from edgensd.runtime.backend_tflm import MIN_ARENA_BYTES, tflm_interpreter

__all__ = ["ARENA_GRANULARITY_BYTES", "arena_size", "write_c_header"]

ARENA_GRANULARITY_BYTES = 16
"""Step of the arena search, bytes (TFLite Micro aligns arena buffers to 16 bytes)."""

_MAX_ARENA_BYTES = 256 << 20
_C_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile "
    "while _Bool _Complex _Imaginary".split()
)


@contextlib.contextmanager
def _quiet_c_stderr():
    """Silence file descriptor 2 (TFLite Micro prints each failed allocation there) while searching."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _allocates(model: bytes, n: int) -> bool:
    try:
        tflm_interpreter(model, n)
    except RuntimeError:
        return False
    return True


def arena_size(model_bytes: bytes) -> int:
    """Smallest TFLite Micro tensor arena that allocates the model, searched.

    Parameters
    ----------
    model_bytes : bytes
        A ``.tflite`` flatbuffer (normally the int8 step graph).

    Returns
    -------
    int
        Arena size in bytes, a multiple of :data:`ARENA_GRANULARITY_BYTES`: the smallest such size with
        which the ``tflite_micro`` interpreter allocates every tensor (the one below fails), or
        :data:`~edgensd.runtime.backend_tflm.MIN_ARENA_BYTES` for a model that fits in that (smaller
        arenas crash the interpreter, so they are not tried).

    Raises
    ------
    RuntimeError
        If the model does not allocate even in 256 MiB (e.g. an op TFLite Micro lacks).
    """
    model = bytes(model_bytes)
    g = ARENA_GRANULARITY_BYTES
    hi = -(-(10 * len(model) + 4096) // g) * g
    with _quiet_c_stderr():
        while not _allocates(model, hi):
            if hi >= _MAX_ARENA_BYTES:
                raise RuntimeError(
                    f"the model does not allocate in a {_MAX_ARENA_BYTES} B TFLite Micro arena; an op may be "
                    "unsupported by TFLite Micro (run tflm_interpreter(model, size) to see its message)"
                )
            hi *= 2
        lo = MIN_ARENA_BYTES - g  # invariant: lo fails (or is below the floor never tried), hi allocates
        while hi - lo > g:
            mid = (lo + hi) // (2 * g) * g
            if _allocates(model, mid):
                hi = mid
            else:
                lo = mid
    it = tflm_interpreter(model, hi)  # the found size must also run
    it.invoke()
    logger.debug("tflm arena: %d bytes for a %d-byte model", hi, len(model))
    return hi


def write_c_header(model_bytes: bytes, path, symbol: str, arena_bytes: int) -> None:
    """Write the model as a C99 header: an aligned ``const`` byte array, its length and the arena size.

    The header defines ``const unsigned char <symbol>[<SYMBOL>_LEN]`` (16-byte aligned with GCC/Clang, as
    TFLite Micro wants the flatbuffer) and the macros ``<SYMBOL>_LEN`` (bytes) and ``<SYMBOL>_ARENA_BYTES``
    (tensor arena, bytes). Include it in one translation unit; elsewhere define ``<SYMBOL>_DECLARE_ONLY``
    before including it to get the declaration and the macros only.

    Parameters
    ----------
    model_bytes : bytes
        The ``.tflite`` flatbuffer.
    path : str or path-like
        Header to write.
    symbol : str
        C identifier of the array (the macros use it upper-cased).
    arena_bytes : int
        Tensor arena size in bytes (:func:`arena_size`).
    """
    if not isinstance(symbol, str) or not _C_IDENT.match(symbol) or symbol in _C_KEYWORDS:
        raise ValueError(
            f"symbol must be a C identifier (letters, digits and '_', not starting with a digit, not a keyword), "
            f"got {symbol!r}"
        )
    if isinstance(arena_bytes, bool) or not isinstance(arena_bytes, (int, np.integer)) or arena_bytes < 1:
        raise ValueError(f"arena_bytes must be a positive int, got {arena_bytes!r}")
    data = bytes(model_bytes)
    if not data:
        raise ValueError("model_bytes is empty")
    up = symbol.upper()
    guard = f"{up}_H_"
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    body = ",\n    ".join(rows)
    text = f"""/* {symbol}: a TensorFlow Lite (.tflite) model for TensorFlow Lite Micro, written by edgensd.export.tflm.
 * Include in one translation unit; elsewhere define {up}_DECLARE_ONLY first. */
#ifndef {guard}
#define {guard}

#define {up}_LEN {len(data)}u
#define {up}_ARENA_BYTES {int(arena_bytes)}u

#if defined(__GNUC__) || defined(__clang__)
#define {up}_ALIGN __attribute__((aligned(16)))
#else
#define {up}_ALIGN /* align to 16 bytes with this compiler's own attribute */
#endif

extern const unsigned char {symbol}[{up}_LEN];

#ifndef {up}_DECLARE_ONLY
const unsigned char {symbol}[{up}_LEN] {up}_ALIGN = {{
    {body}
}};
#endif

#endif /* {guard} */
"""
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
    logger.debug("wrote %s: %d-byte model, arena %d bytes", path, len(data), arena_bytes)
