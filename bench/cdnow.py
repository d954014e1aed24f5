"""The CDNOW purchase history as engine events: a real, order-heavy workload.

CDNOW is a public data set of 23,570 customers who made their first purchase at the CD
retailer in the first quarter of 1997, with every purchase they made up to the end of June
1998: 69,659 transactions (customer, date, number of CDs, dollar value). It ships in the
``lifetimes`` wheel (the ``bench`` extra, installed by ``make bench``); its file is found
without importing the package (which pulls autograd and may not import beside new pandas).

The API, also used by other benchmarks:

- ``transactions()``: ``(customer id, purchase time in epoch ms, dollar value)``, sorted
  by time; ids look like ``cdnow-00001``, the time is 12:00 UTC of the purchase date;
- ``events(until_ms=None)``: one contract-valid ``order_paid`` event (JSON bytes) per
  transaction whose time is before `until_ms`, in the same order. The contract accepts no
  event time before 2000, so each event's ``ts`` is the purchase time plus ``TS_SHIFT_MS``
  (28 years: 1997 becomes 2025, same calendar dates and weekdays); `until_ms` is compared
  with the purchase time, not with the shifted ``ts``;
- ``CALIBRATION_END_MS``: 1997-10-01 00:00 UTC, the end of the first 39 weeks (the usual
  CDNOW split): ``events(CALIBRATION_END_MS)`` is 49,086 purchases of all 23,570 customers.

``python bench/cdnow.py`` prints what the data holds.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import orjson

CACHE = Path(__file__).resolve().parent / ".cache"  # the cache of bench/ingest.py's workloads
DAY_MS = 86_400_000
CALIBRATION_END_MS = int(datetime(1997, 10, 1, tzinfo=UTC).timestamp() * 1000)
# 1997-01-01 -> 2025-01-01: 28 years of 365 days and 7 leap days, a whole number of weeks.
TS_SHIFT_MS = (28 * 365 + 7) * DAY_MS
_FORMAT = 1  # bump when the events' layout changes, so stale cache files are not read


def data_file() -> Path:
    """The path of ``CDNOW_master.txt`` inside the installed ``lifetimes`` package."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "the CDNOW data set comes in the 'lifetimes' package, which is not installed: "
            "`make bench` installs it (the project's 'bench' extra: pip install -e '.[bench]')"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "CDNOW_master.txt"
        if path.is_file():
            return path
    raise SystemExit(f"lifetimes is installed but has no datasets/CDNOW_master.txt under {spec.origin}")


def _rows() -> list[tuple[str, int, float, int, str]]:
    """(customer id, purchase ms, dollars, CDs, event id) per transaction, sorted by time.

    The sort is stable over the file's order (customer, then date), so it is deterministic;
    a customer's several purchases of one day get ids ending -0, -1, ...
    """
    rows = []
    seen: dict[tuple[str, str], int] = {}
    lines = data_file().read_text().splitlines()
    for line in lines[1:]:  # a header line first
        fields = line.split()
        if not fields:
            continue
        cust, date, cds, dollars = fields
        day = datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC)
        ms = int(day.timestamp() * 1000) + DAY_MS // 2
        cid = f"cdnow-{cust}"
        k = seen[cust, date] = seen.get((cust, date), -1) + 1
        rows.append((cid, ms, float(dollars), int(cds), f"{cid}-{date}-{k}"))
    rows.sort(key=lambda r: r[1])
    return rows


def transactions() -> list[tuple[str, int, float]]:
    """Every purchase as (customer id, epoch ms at 12:00 UTC of its date, dollar value), by time."""
    return [(cid, ms, dollars) for cid, ms, dollars, _, _ in _rows()]


def events(until_ms: int | None = None) -> list[bytes]:
    """One ``order_paid`` event per purchase before `until_ms` (purchase time), cached as JSONL.

    ``props.amount`` is what the shipped features read for revenue; ``currency`` is USD;
    ``quantity`` is the number of CDs. Event ids are deterministic, so a replay is deduplicated.
    """
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"cdnow-v{_FORMAT}-{'all' if until_ms is None else until_ms}.jsonl"
    if not path.exists():
        out = [
            orjson.dumps(
                {
                    "eventId": eid,
                    "profileId": cid,
                    "type": "order_paid",
                    "ts": ms + TS_SHIFT_MS,
                    "source": "cdnow",
                    "props": {"orderId": eid, "amount": dollars, "currency": "USD", "quantity": cds},
                }
            )
            for cid, ms, dollars, cds, eid in _rows()
            if until_ms is None or ms < until_ms
        ]
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(b"\n".join(out) + b"\n")
        tmp.replace(path)
    return [line for line in path.read_bytes().splitlines() if line]


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def main() -> None:
    rows = transactions()
    cal = [r for r in rows if r[1] < CALIBRATION_END_MS]
    print(f"data: {data_file()}")
    print(
        f"all: {len(rows):,} purchases of {len({r[0] for r in rows}):,} customers, "
        f"{_day(rows[0][1])} to {_day(rows[-1][1])}, ${sum(r[2] for r in rows):,.2f}"
    )
    print(
        f"calibration (before {_day(CALIBRATION_END_MS)}): {len(cal):,} purchases of "
        f"{len({r[0] for r in cal}):,} customers, ${sum(r[2] for r in cal):,.2f}"
    )
    print(f"first event: {events(CALIBRATION_END_MS)[0].decode()}")


if __name__ == "__main__":
    main()
