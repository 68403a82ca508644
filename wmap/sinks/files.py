"""File sink: streams a plan's values into safetensors (one file, or shards + index.json).

Values are written as they are computed, so memory stays at the working set. Nothing
appears at the output path until `commit` renames the finished temporary file(s) into
place; `abort` removes them, leaving any old file untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from wmap.core.errors import error
from wmap.core.inventory import Inventory, TensorMeta
from wmap.formats.base import ArrayKind, TensorSource
from wmap.sinks.base import Check, LandedReader
from wmap.sinks.safetensors_writer import SafetensorsWriter


class SafetensorsSink:
    """Streams values into safetensors shards as they are staged; `commit` renames them into place."""

    framework = None
    checks_while_staging = False

    def __init__(self, path: str, order: Sequence[TensorMeta], inventory: Inventory, metadata: dict[str, str],
                 shard_size: int | None, template: TensorSource | None, array_kind: ArrayKind = "torch"):
        self.path = path
        self.array_kind: ArrayKind = array_kind
        self._inventory = inventory
        self.template = template
        self.writer = SafetensorsWriter(path, list(order), metadata=metadata, shard_size=shard_size)

    def inventory(self) -> Inventory:
        return self._inventory

    @property
    def result(self) -> str:
        return self.path

    def read_current(self, meta: TensorMeta) -> Any:
        if self.template is None:
            raise error("WM602", f"cannot keep `{meta.name}`: the target has no values (it is not a checkpoint)",
                        hint="keep needs a target checkpoint to copy from, e.g. `--target template.safetensors`")
        return self.template.read(meta.name, kind=self.array_kind)

    @contextlib.contextmanager
    def landed(self) -> Iterator[LandedReader]:
        """The committed output (not the template), opened once for every tensor read from it."""
        from wmap.formats import open_source

        src = open_source(self.path)
        try:
            yield lambda meta: src.read(meta.name, kind="numpy")
        finally:
            src.close()

    def stage(self, meta: TensorMeta, value: Any, check: Check | None = None) -> None:
        self.writer.write(meta.name, value)

    def commit(self) -> None:
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()

    def finish(self, frozen: set[str], options: dict[str, object]) -> list[str]:
        if frozen:
            return [f"{len(frozen)} tensor(s) are marked frozen; a file has no trainable flag, so the plan's "
                    "`freeze` applies when the file is loaded with `wmap apply` into a model"]
        return []
