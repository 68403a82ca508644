"""HDF5 plumbing shared by the Keras readers: safe opening, safe dataset lookup, zip members.

HDF5 can point outside itself (external links, external or virtual datasets), which would
let a hostile weights file read arbitrary files; Keras' own loader refuses them and so do
we (WM509). Inside a `.keras` zip the weights member is normally stored uncompressed, so
h5py reads it in place through a window on the archive instead of extracting it.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import IO, Any, cast

import ml_dtypes
import numpy as np

from wmap.core.errors import WmapError
from wmap.formats._common import dtype_name, fail, require


def open_h5(source: str | IO[bytes], where: str) -> Any:
    """h5py.File in read mode; a file HDF5 cannot parse is WM509."""
    h5py = require("h5py", f"reading `{where}`")
    try:
        return h5py.File(source, "r")
    except FileNotFoundError:
        raise fail("WM500", f"cannot read `{where}`: no such file") from None
    except PermissionError as exc:
        raise fail("WM500", f"cannot read `{where}`: {exc.strerror}") from None
    except Exception as exc:
        raise fail("WM509", f"`{where}` is not a readable HDF5 file ({exc})",
                   hint="the file is corrupt, truncated, or not a Keras weights file") from None


def damaged(where: str, exc: BaseException) -> Exception:
    """WM509 for the assorted exceptions h5py raises on a damaged file."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return fail("WM509", f"`{where}` is damaged: {text[:200]}", hint="re-save or re-download the file")


def dataset(group: Any, key: str, where: str) -> Any:
    """`group[key]` if it is a plain, self-contained dataset; anything else is WM509."""
    h5py = require("h5py", where)
    try:
        link = group.get(key, getlink=True)
    except Exception as exc:
        raise fail("WM509", f"`{where}`: cannot look up `{key}` in `{group.name}` ({exc})") from None
    if link is None:
        raise fail("WM509", f"`{where}`: `{group.name}/{key}` is missing",
                   hint="the file does not have the Keras weights layout")
    if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
        raise fail("WM509", f"`{where}`: `{group.name}/{key}` is a link; wmap does not follow links",
                   hint="a Keras weights file stores its datasets in place")
    try:
        obj = group[key]
        if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            raise fail("WM509", f"`{where}`: `{obj.name}` stores its data outside the file; refused",
                       hint="a Keras weights file stores its datasets in place")
    except WmapError:
        raise
    except Exception as exc:
        raise damaged(where, exc) from None
    if not isinstance(obj, h5py.Dataset):
        raise fail("WM509", f"`{where}`: `{obj.name}` is a group where a weight dataset was expected",
                   hint="the file does not have the Keras weights layout")
    return obj


def dataset_dtype(ds: Any, where: str) -> str:
    """Canonical dtype of a Keras dataset (bf16 is stored as 2-byte opaque with a `dtype` attr)."""
    tag = ds.attrs.get("dtype")
    if isinstance(tag, bytes):
        tag = tag.decode()
    if tag == "bfloat16" and ds.dtype.itemsize == 2:
        return "bfloat16"
    name = dtype_name(ds.dtype)
    if name is None:
        raise fail("WM506", f"`{where}`: `{ds.name}` has dtype `{ds.dtype}`, which wmap cannot plan with")
    return name


def read_dataset(ds: Any, dtype: str, where: str) -> np.ndarray[Any, Any]:
    try:
        arr = np.asarray(ds[()])
    except Exception as exc:
        raise fail("WM509", f"`{where}`: cannot read `{ds.name}` ({exc})", hint="the file is corrupt") from None
    if dtype == "bfloat16":
        arr = arr.view(ml_dtypes.bfloat16)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def text_attr(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class ZipWindow(io.RawIOBase):
    """A read-only, seekable view of one stored (uncompressed) member of a zip archive."""

    def __init__(self, path: str, start: int, size: int):
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, buf: Any) -> int:
        n = max(0, min(len(buf), self._size - self._pos))
        if n == 0:
            return 0
        self._f.seek(self._start + self._pos)
        got = self._f.readinto(memoryview(buf)[:n]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def zip_member(zf: zipfile.ZipFile, path: str, member: str, where: str, limit: int) -> IO[bytes]:
    """A member as a seekable file: a window when stored, else decompressed into memory."""
    info = zf.getinfo(member)
    if info.compress_type == zipfile.ZIP_STORED:
        fp = zf.fp
        assert fp is not None
        fp.seek(info.header_offset)
        head = fp.read(30)
        if len(head) < 30 or head[:4] != b"PK\x03\x04":
            raise fail("WM509", f"`{where}`: the zip entry `{member}` is damaged")
        start = info.header_offset + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30],
                                                                                                   "little")
        if start + info.file_size > os.path.getsize(path):
            raise fail("WM509", f"`{where}` is truncated: `{member}` runs past the end of the archive")
        return cast(IO[bytes], ZipWindow(path, start, info.file_size))
    if info.file_size > limit:
        raise fail("WM509", f"`{where}`: compressed `{member}` would expand to {info.file_size:,} bytes",
                   hint="re-save the model (Keras stores weights uncompressed)")
    try:
        return io.BytesIO(zf.read(member))
    except Exception as exc:
        raise fail("WM509", f"`{where}`: cannot decompress `{member}` ({exc})") from None
