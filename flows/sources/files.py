"""File replay: JSONL or CSV (mapped to the event contract), one partition per file."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from flows.core import metrics
from flows.core.contract import RawRecord
from flows.core.errors import SourceError
from flows.core.settings import CsvSettings
from flows.core.streamtime import now_ms
from flows.sources.control import Pacer, RunControl


def csv_row_to_object(row: dict[str, str], mapping: CsvSettings) -> dict[str, Any]:
    """A CSV row as a contract object: mapped columns, ``props.*`` columns as props.

    Numeric-looking props become numbers; empty cells are left out.

    >>> m = CsvSettings()
    >>> csv_row_to_object({"event_id": "e1", "profile_id": "p1", "type": "order_paid",
    ...                    "ts": "1700000000", "props.amount": "12.50", "props.sku": ""}, m)
    {'eventId': 'e1', 'profileId': 'p1', 'type': 'order_paid', 'ts': '1700000000', 'props': {'amount': 12.5}}
    """
    obj: dict[str, Any] = {}
    for field_name, column in mapping.columns.items():
        value = row.get(column)
        if value not in (None, ""):
            obj[field_name] = value
    if mapping.props_prefix:
        props: dict[str, Any] = {}
        plen = len(mapping.props_prefix)
        for column, value in row.items():
            if column and column.startswith(mapping.props_prefix) and value not in (None, ""):
                props[column[plen:]] = _number_or_text(value)
        if props:
            obj["props"] = props
    return obj


def _number_or_text(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return value
    return number if number == number and number not in (float("inf"), float("-inf")) else value


class FileSource(FixedPartitionedSource[RawRecord, int]):
    """Replays a JSONL file (one event per line) or a CSV file (columns mapped by settings).

    One partition per file; the snapshot is the byte offset of the next line, so a
    resumed replay continues where it stopped. The run ends at the end of the file.
    """

    def __init__(self, path: Path, csv_settings: CsvSettings, rate: float, control: RunControl) -> None:
        self._path = Path(path)
        if not self._path.is_file():
            raise SourceError(f"{self._path}: no such file to replay")
        self._csv = csv_settings if self._path.suffix.lower() == ".csv" else None
        self._rate = rate
        self._control = control

    def list_parts(self) -> list[str]:
        return [str(self._path.resolve())]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FilePartition:
        return _FilePartition(Path(for_part), self._csv, resume_state or 0, self._rate, self._control)


class _FilePartition(StatefulSourcePartition[RawRecord, int]):
    def __init__(
        self,
        path: Path,
        csv_settings: CsvSettings | None,
        offset: int,
        rate: float,
        control: RunControl,
    ) -> None:
        self._fh = path.open("rb")
        self._csv = csv_settings
        self._header: list[str] | None = None
        if csv_settings is not None:
            header_line = self._fh.readline()
            self._header = next(
                csv.reader([header_line.decode("utf-8-sig")], delimiter=csv_settings.delimiter)
            )
            offset = max(offset, self._fh.tell())
        self._fh.seek(offset)
        self._origin = f"file:{path}"
        self._pacer = Pacer(rate)
        self._control = control
        self._counter = metrics.RECORDS_IN.labels(source="file")
        control.start()

    def next_batch(self) -> list[RawRecord]:
        n = self._control.quota(self._pacer, 1000)
        if n == 0:
            return []
        out: list[RawRecord] = []
        t = now_ms()
        for _ in range(n):
            offset = self._fh.tell()
            line = self._fh.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            out.append(RawRecord(self._encode(line), self._origin, 0, offset, None, t))
        if not out and not line:
            raise StopIteration
        self._counter.inc(len(out))
        return out

    def _encode(self, line: bytes) -> bytes:
        if self._csv is None or self._header is None:
            return line
        try:
            cells = next(csv.reader(io.StringIO(line.decode("utf-8")), delimiter=self._csv.delimiter))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            return line  # not decodable: the validator dead-letters it as invalid_json
        row = dict(zip(self._header, cells, strict=False))
        return orjson.dumps(csv_row_to_object(row, self._csv))

    def next_awake(self) -> datetime | None:
        return self._pacer.next_awake()

    def snapshot(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()
