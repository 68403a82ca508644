"""What a file may make wmap allocate, and the zip container rules the zip-based readers share.

**Expansion.** Nothing allocates what a file merely declares: every tensor, HDF5 dataset or zip
member must be backed by bytes the file really stores. Compression (and, for PyTorch, views
with zero or overlapping strides) lets a few stored bytes stand for many, so the bound is a
ratio: at most `MAX_EXPANSION` (100) declared bytes per stored byte, with the first
`FREE_BYTES` (1 MiB) of any one item always allowed (a zero bias compresses far better than
100:1, and costs nothing). Real weights compress by less than 2:1; only near-constant data
goes beyond 100:1, and a deflate bomb goes to ~1000:1. A whole archive may declare at most
`MAX_EXPANSION` times its size in total (beyond `FREE_TOTAL`), so many small members cannot add
up to a bomb either. Every bound is checked from sizes the container declares, before a byte is
inflated or mapped.

**Zip archives** (`.npz`, `.keras`, torch.save files): each member's bytes must lie inside the
archive, before the next member and the central directory, where its local header says they
start (`ZipInfo` sizes are only what the central directory claims). `members` returns each
member's `ZipInfo` with the absolute offset of its data, for readers that map stored members.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass

from wmap.formats._common import fail

MAX_EXPANSION = 100
FREE_BYTES = 1 << 20
FREE_TOTAL = 64 << 20
EXPANSION_HINT = (f"wmap reads at most {MAX_EXPANSION} declared bytes per byte a file stores (the first "
                  f"{FREE_BYTES >> 20} MiB of each item are free); real weights compress by less than 2:1, so "
                  "this is a bomb or a damaged file. If you trust it, re-save it uncompressed")

_LOCAL = struct.Struct("<4sHHHHHIIIHH")


def expansion_ok(declared: int, stored: int) -> bool:
    """Whether `declared` bytes may stand on `stored` bytes (see the module docstring)."""
    return declared <= max(FREE_BYTES, MAX_EXPANSION * stored)


@dataclass(frozen=True)
class Member:
    info: zipfile.ZipInfo
    data_start: int  # absolute offset of the member's (stored or compressed) bytes

    @property
    def stored(self) -> bool:
        return self.info.compress_type == zipfile.ZIP_STORED


def members(zf: zipfile.ZipFile, path: str, code: str) -> dict[str, Member]:
    """Every member of an open archive, checked: where its bytes are, and what it may expand to.

    Refused (with `code`, naming the archive and the member): a local header that is missing or
    disagrees with the directory's name, bytes that run past the next member or into the central
    directory, a stored member whose two sizes differ, a compressed member that would expand
    more than `MAX_EXPANSION` times, a total past `MAX_EXPANSION` times the archive's size, and
    the same name twice.
    """
    size = os.path.getsize(path)
    end = getattr(zf, "start_dir", size)
    infos = sorted(zf.infolist(), key=lambda i: i.header_offset)
    fp = zf.fp
    assert fp is not None
    out: dict[str, Member] = {}
    total = 0
    for i, info in enumerate(infos):
        name = info.filename
        if name in out:
            raise fail(code, f"`{path}` holds the member `{name}` twice", hint="the archive was edited; re-save it")
        fp.seek(info.header_offset)
        head = fp.read(_LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != b"PK\x03\x04":
            raise fail(code, f"`{path}`: the zip entry `{name}` has no local header where the directory says",
                       hint="the archive is damaged or was edited; re-save it")
        fields = _LOCAL.unpack(head)
        start = info.header_offset + _LOCAL.size + fields[9] + fields[10]
        limit = infos[i + 1].header_offset if i + 1 < len(infos) else end
        if start + info.compress_size > limit:
            following = f"the next member `{infos[i + 1].filename}`" if i + 1 < len(infos) else \
                "the archive's central directory"
            raise fail(code, f"`{path}`: member `{name}` claims {info.compress_size:,} bytes at offset {start:,}, "
                       f"which runs into {following}", hint="the archive is truncated or was edited; re-save it")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise fail(code, f"`{path}`: stored member `{name}` claims {info.file_size:,} bytes but occupies "
                           f"{info.compress_size:,}", hint="the archive is damaged or was edited; re-save it")
        elif not expansion_ok(info.file_size, info.compress_size):
            raise fail(code, f"`{path}`: compressed member `{name}` would expand from {info.compress_size:,} to "
                       f"{info.file_size:,} bytes ({info.file_size // max(info.compress_size, 1):,}:1)",
                       hint=EXPANSION_HINT)
        total += info.file_size
        out[name] = Member(info, start)
    if total > max(FREE_TOTAL, MAX_EXPANSION * size):
        raise fail(code, f"`{path}`: its members would expand to {total:,} bytes from a {size:,}-byte archive",
                   hint=EXPANSION_HINT)
    return out


def check_total(declared: int, stored: int, path: str, code: str) -> None:
    """A whole file's tensors may declare at most `MAX_EXPANSION` times the bytes behind them."""
    if declared > max(FREE_TOTAL, MAX_EXPANSION * stored):
        raise fail(code, f"`{path}`: its tensors declare {declared:,} bytes in total but the file stores "
                   f"{stored:,} bytes for them", hint=EXPANSION_HINT)
