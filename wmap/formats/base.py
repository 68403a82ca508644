"""Reading tensors: the small interface between the plan and where weights live.

A `TensorSource` answers two questions: what is here (`inventory()`, from metadata
only, never weight data) and give me this one tensor (`read`, lazily, memory-mapped
where the format allows). Execution asks for one tensor at a time, so peak memory is
bounded by the working set, not the checkpoint.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from wmap.core.inventory import Inventory

ArrayKind = Literal["numpy", "torch"]


class Array(Protocol):
    """A tensor as it crosses the seams between readers, the executor and sinks: a numpy array or a
    torch tensor (which, `ArrayKind` says). What every seam may rely on without knowing which is its
    shape and dtype; a sink or reader that computes with it narrows it to its own framework's type."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> object: ...


class ByteSpan(Protocol):
    """A tensor's bytes as they lie in a file, for a sink that can take them straight into memory of
    its own (one copy, by the kernel, with no mapping of the file: see `TorchModuleSink`). A reader
    offers one only for a tensor whose bytes are exactly what the target holds (same shape, same
    dtype, little-endian on a little-endian host)."""

    @property
    def nbytes(self) -> int: ...

    def read_into(self, buf: memoryview, start: int = 0, stop: int | None = None) -> None:
        """Bytes [start, stop) of the tensor into `buf[start:stop]`; WM505 when the file has fewer."""
        ...


@runtime_checkable
class TensorSource(Protocol):
    """A readable collection of named tensors."""

    def inventory(self) -> Inventory:
        """Names (normalised), shapes, dtypes and native names, from headers only."""
        ...

    def read(self, name: str, kind: ArrayKind = "numpy") -> Array:
        """The tensor `name` (normalised name) as a numpy array or torch tensor.

        Returns a read-only view backed by the file's mmap where the format allows;
        callers copy. Raises WmapError (WM5xx) on corrupt or unreadable data.
        """
        ...

    def close(self) -> None: ...
