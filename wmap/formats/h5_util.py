"""HDF5 plumbing shared by the Keras readers: safe opening, one link and storage policy, zip members.

HDF5 can point outside itself, which would let a hostile weights file read other files on the
machine: external links (resolved when a path through them is opened, also by `name in
group` for a path with several components), external raw storage, and virtual datasets. Keras
writes none of these, and neither do we follow them. The policy, for every HDF5 reader
(Keras 3 `.weights.h5`, the `model.weights.h5` inside `.keras`, legacy Keras 2 `.h5`):

- every object is reached one link at a time (`hard_child`, `walk`), and every link must be a hard
  link: external links are never resolved, and soft links are refused too (Keras never writes
  them, and a soft link's target path may itself run through an external link);
- a dataset must store its data in the file: no external storage, no virtual dataset;
- a dataset must not declare more than the expansion bound allows over the storage HDF5 has
  allocated for it (`bounds`): a chunked dataset whose chunks were never written reads as its
  fill value, so a few KB could otherwise make the reader allocate gigabytes.

Any breach is WM509 naming the file, the offending HDF5 path and where a link points. Inside
a `.keras` zip the weights member is normally stored uncompressed, so h5py reads it in place
through a window on the archive instead of extracting it.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO, TYPE_CHECKING, Any, cast

import numpy as np

from wmap.formats._common import dtype_name, fail, np_dtype, require
from wmap.formats.bounds import EXPANSION_HINT, Member, expansion_ok

if TYPE_CHECKING:
    import h5py


def open_h5(source: str | IO[bytes], where: str) -> h5py.File:
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


LINK_HINT = "a Keras weights file stores every group and dataset in place; re-save it with model.save_weights()"


def hard_child(group: h5py.Group, name: str, where: str) -> h5py.Group | h5py.Dataset | None:
    """`group[name]` for one link name, or None when there is no such link; only hard links are
    resolved (anything else is WM509, see the module docstring)."""
    h5py = require("h5py", where)
    full = f"{group.name.rstrip('/')}/{name}"
    try:
        link = group.get(name, getlink=True)  # one component: reads the link itself, resolves nothing
    except Exception as exc:
        raise damaged(where, exc) from None
    if link is None:
        return None
    if isinstance(link, h5py.ExternalLink):
        raise fail("WM509", f"`{where}`: `{full}` is an external link to `{link.path}` in `{link.filename}`; "
                   "wmap does not follow links", hint=LINK_HINT)
    if isinstance(link, h5py.SoftLink):
        raise fail("WM509", f"`{where}`: `{full}` is a soft link to `{link.path}`; wmap does not follow links",
                   hint=LINK_HINT)
    if not isinstance(link, h5py.HardLink):
        raise fail("WM509", f"`{where}`: `{full}` is a user-defined link; wmap does not follow links", hint=LINK_HINT)
    try:
        return group[name]
    except Exception as exc:
        raise damaged(where, exc) from None


def walk(group: h5py.Group, path: str, where: str) -> h5py.Group | h5py.Dataset | None:
    """The object at a relative `path` ("a/b/c"), reached link by link through `hard_child`, or None."""
    h5py = require("h5py", where)
    obj = group
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if not isinstance(obj, h5py.Group):
            raise fail("WM509", f"`{where}`: `{obj.name}` is a dataset, but `{path}` continues below it",
                       hint="the file does not have the Keras weights layout")
        obj = hard_child(obj, part, where)
        if obj is None:
            return None
    return obj


def check_dataset(ds: h5py.Dataset, where: str) -> h5py.Dataset:
    """A dataset that stores its own data, in the file, and not much less of it than it declares."""
    try:
        outside = ds.external is not None or ds.is_virtual
        declared, stored = int(ds.size) * ds.dtype.itemsize, int(ds.id.get_storage_size())
    except Exception as exc:
        raise damaged(where, exc) from None
    if outside:
        raise fail("WM509", f"`{where}`: `{ds.name}` stores its data outside the file (external storage or a "
                   "virtual dataset); refused", hint=LINK_HINT)
    if declared and not expansion_ok(declared, stored):
        what = "its unwritten chunks would read as the fill value" if stored == 0 else "far less than compression gives"
        raise fail("WM509", f"`{where}`: `{ds.name}` declares {declared:,} bytes ({tuple(ds.shape)} {ds.dtype}) but "
                   f"stores only {stored:,} ({what})", hint=EXPANSION_HINT)
    return ds


def dataset(group: h5py.Group, key: str, where: str) -> h5py.Dataset:
    """`group[key]` (a relative path) if it is a plain, self-contained dataset; anything else is WM509."""
    h5py = require("h5py", where)
    obj = walk(group, key, where)
    if obj is None:
        raise fail("WM509", f"`{where}`: `{group.name.rstrip('/')}/{key}` is missing",
                   hint="the file does not have the Keras weights layout")
    if not isinstance(obj, h5py.Dataset):
        raise fail("WM509", f"`{where}`: `{obj.name}` is a group where a weight dataset was expected",
                   hint="the file does not have the Keras weights layout")
    return check_dataset(obj, where)


def dataset_dtype(ds: h5py.Dataset, where: str) -> str:
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


def read_dataset(ds: h5py.Dataset, dtype: str, where: str) -> np.ndarray[Any, Any]:
    try:
        arr = np.asarray(ds[()])
    except Exception as exc:
        raise fail("WM509", f"`{where}`: cannot read `{ds.name}` ({exc})", hint="the file is corrupt") from None
    if dtype == "bfloat16":
        arr = arr.view(np_dtype("bfloat16"))
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


def zip_member(zf: zipfile.ZipFile, path: str, member: Member, where: str, limit: int) -> IO[bytes]:
    """A member (already checked by `bounds.members`) as a seekable file: a window when stored,
    else decompressed into memory (at most `limit` bytes, and within the expansion bound)."""
    info = member.info
    if member.stored:
        return cast(IO[bytes], ZipWindow(path, member.data_start, info.file_size))
    if info.file_size > limit:
        raise fail("WM509", f"`{where}`: compressed `{info.filename}` would expand to {info.file_size:,} bytes",
                   hint="re-save the model (Keras stores weights uncompressed)")
    try:
        return io.BytesIO(zf.read(info))
    except Exception as exc:
        raise fail("WM509", f"`{where}`: cannot decompress `{info.filename}` ({exc})") from None
