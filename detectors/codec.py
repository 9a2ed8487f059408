"""The byte format of sketches and sufficient statistics (checkpoints, partial windows).

Layout::

    b"DLSK"  magic
    u8       format version (1)
    ...      zlib-compressed body:
             u32 little-endian length of the header
             header: UTF-8 JSON {"kind", "profile", "fields", "arrays": [[name, dtype, length]]}
             the arrays' raw little-endian bytes, in header order

JSON floats are written with Python's shortest round-tripping repr (and
``Infinity`` for the empty minimum/maximum), integer counts as JSON integers,
arrays as raw bytes, so decoding gives back exactly what was encoded. zlib
makes the mostly-zero count arrays of a small window a few hundred bytes.
``profile`` is the fingerprint of the reference profile the counts belong to,
so a sketch can never be merged with or read against another profile's bins.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from detectors.errors import DetectorError

MAGIC = b"DLSK"
FORMAT_VERSION = 1
_DTYPES = {"int64": np.dtype("<i8"), "float64": np.dtype("<f8")}


def encode(
    kind: str,
    profile: str,
    fields: Mapping[str, Any],
    arrays: Mapping[str, NDArray[Any]],
) -> bytes:
    """Serialise one object: its kind, profile fingerprint, scalar fields and arrays.

    Examples
    --------
    >>> data = encode("demo", "abc", {"n": 3}, {"counts": np.array([1, 2], dtype=np.int64)})
    >>> kind, profile, fields, arrays = decode(data, "demo")
    >>> fields, arrays["counts"].tolist()
    ({'n': 3}, [1, 2])
    """
    specs: list[list[Any]] = []
    chunks: list[bytes] = []
    for name, array in arrays.items():
        dtype_name = "int64" if np.issubdtype(array.dtype, np.integer) else "float64"
        values = np.ascontiguousarray(array, dtype=_DTYPES[dtype_name])
        specs.append([name, dtype_name, int(values.size)])
        chunks.append(values.tobytes())
    header = json.dumps(
        {"kind": kind, "profile": profile, "fields": dict(fields), "arrays": specs},
        separators=(",", ":"),
    ).encode("utf-8")
    body = struct.pack("<I", len(header)) + header + b"".join(chunks)
    return MAGIC + bytes([FORMAT_VERSION]) + zlib.compress(body, 1)


def decode(data: bytes, kind: str) -> tuple[str, str, dict[str, Any], dict[str, NDArray[Any]]]:
    """Read what :func:`encode` wrote; ``kind`` must match.

    Raises
    ------
    DetectorError
        When ``data`` is not a driftline object of that kind, names ``data``.

    Examples
    --------
    >>> decode(b"DLSK\x01garbage", "demo")
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: data: corrupt driftline sketch (...)
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DetectorError(f"data must be bytes (got {type(data).__name__})")
    raw = bytes(data)
    if raw[:4] != MAGIC or len(raw) < 5:
        raise DetectorError("data: not a driftline sketch (the first bytes are not b'DLSK')")
    if raw[4] != FORMAT_VERSION:
        raise DetectorError(
            f"data: format version {raw[4]} is not supported "
            f"(this driftline reads {FORMAT_VERSION})"
        )
    try:
        body = zlib.decompress(raw[5:])
        (length,) = struct.unpack_from("<I", body, 0)
        header = json.loads(body[4 : 4 + length].decode("utf-8"))
        offset = 4 + length
        arrays: dict[str, NDArray[Any]] = {}
        for name, dtype_name, size in header["arrays"]:
            dtype = _DTYPES[dtype_name]
            end = offset + int(size) * dtype.itemsize
            if end > len(body):
                raise ValueError("truncated")
            arrays[str(name)] = np.frombuffer(body[offset:end], dtype=dtype).astype(
                dtype.newbyteorder("="), copy=True
            )
            offset = end
        if offset != len(body):
            raise ValueError("trailing bytes")
        found_kind = str(header["kind"])
        profile = str(header["profile"])
        fields = dict(header["fields"])
    except (zlib.error, struct.error, ValueError, KeyError, TypeError) as exc:
        raise DetectorError(f"data: corrupt driftline sketch ({exc})") from None
    if found_kind != kind:
        raise DetectorError(f"data: holds a {found_kind}, not a {kind}")
    return found_kind, profile, fields, arrays
