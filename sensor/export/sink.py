"""Where a writer's bytes go: a file created only when the first byte is written, or stdout.

A command that fails before writing anything (a missing or bad capture) leaves no file
behind, not even a header, and an existing file of that name is not truncated.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


class Sink:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self._fh: IO[bytes] | None = None

    @property
    def opened(self) -> bool:
        return self._fh is not None

    def file(self) -> IO[bytes]:
        """The binary file to write to (created on first call)."""
        if self._fh is None:
            try:
                self._fh = open(self.path, "wb") if self.path else sys.stdout.buffer  # noqa: SIM115 (closed in close())
            except OSError as exc:
                from netwarden.errors import ConfigError

                raise ConfigError(f"cannot write {self.path}: {exc.strerror}") from None
        return self._fh

    def check(self) -> None:
        """Refuse, before any work, an output file that could not be created."""
        import os

        if not self.path:
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(self.path) or not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            from netwarden.errors import ConfigError

            why = "is a directory" if os.path.isdir(self.path) else "no writable directory"
            raise ConfigError(f"cannot write {self.path}: {why}")

    def close(self) -> None:
        if self._fh is None:
            return
        if self.path:
            self._fh.close()
        else:
            self._fh.flush()


class BatchFileWriter:
    """Base of the writers that wrap one of pyarrow's (CSV, Parquet): the pyarrow writer is
    created with the first batch, so a run that writes nothing creates nothing; ``close`` of
    a writer that saw no batch writes an empty file of the format."""

    columns: tuple[str, ...] | None = None

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._writer: Any = None

    def _open(self, schema: pa.Schema) -> Any:
        raise NotImplementedError

    def _prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch

    def write(self, batch: pa.RecordBatch) -> None:
        data = self._prepare(batch)
        if self._writer is None:
            self._writer = self._open(data.schema)
        if data.num_rows:
            self._writer.write_batch(data)

    def close(self) -> None:
        if self._writer is None:
            from sensor.export.textcols import empty_flows

            self.write(empty_flows())
        self._writer.close()
        self.sink.close()


class TextWriter:
    """Base of the text writers: ``header`` when the file is created (by the first batch, or
    by ``close`` when there was none), ``lines`` per batch, ``footer`` at the end."""

    columns: tuple[str, ...] | None = None

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def header(self, batch: pa.RecordBatch) -> bytes:
        return b""

    def lines(self, batch: pa.RecordBatch) -> Iterator[bytes | pa.Buffer]:
        raise NotImplementedError

    def footer(self) -> bytes:
        return b""

    def _start(self, batch: pa.RecordBatch) -> IO[bytes]:
        if not self.sink.opened:
            self.sink.file().write(self.header(batch))
        return self.sink.file()

    def render(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[bytes | pa.Buffer]]:
        """A batch's text, in chunks (on any thread; ``emit`` writes it, in order)."""
        return batch, list(self.lines(batch))

    def emit(self, rendered: tuple[pa.RecordBatch, list[bytes | pa.Buffer]]) -> None:
        batch, chunks = rendered
        fh = self._start(batch)
        for chunk in chunks:
            fh.write(chunk)

    def write(self, batch: pa.RecordBatch) -> None:
        self.emit(self.render(batch))

    def close(self) -> None:
        from sensor.export.textcols import empty_flows

        self._start(empty_flows()).write(self.footer())
        self.sink.close()
