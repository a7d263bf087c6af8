"""The metrics store: validated, idempotent batch writes of samples, range reads and resampling.

Samples are keyed by (deployment, metric, timestamp): writing the same key again replaces the value (upsert), so a
collector may re-send a batch after a failure without duplicating rows. On Postgres the hot paths bypass the ORM:
writes go as one ``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT`` statement per chunk and reads as two binary
arrays parsed straight into numpy, so a week of per-second samples reads in well under a second.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy import Engine, delete, select, text

from prewarm.db.models import Deployment, MetricSample

logger = logging.getLogger(__name__)

METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EARLIEST_TS = 946_684_800.0  # 2000-01-01: anything older is a unit mistake (ms for s), not a sample
CHUNK_ROWS = 20_000
SQLITE_TS_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # what SQLAlchemy's SQLite DateTime stores
POSTGRES_EPOCH_S = 946_684_800  # binary timestamptz counts microseconds from 2000-01-01
TIMESTAMPTZ_ARRAY_OID = 1185
FLOAT8_ARRAY_OID = 1022
Aggregation = Literal["mean", "sum", "max", "min", "last"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric of one deployment; ``ts`` is Unix epoch seconds (UTC)."""

    deployment: str
    metric: str
    ts: float
    value: float


class InvalidSampleError(ValueError):
    """A batch held invalid samples; nothing of it was written. ``problems`` lists them by position."""

    def __init__(self, problems: list[str], total_invalid: int) -> None:
        shown = "; ".join(problems)
        more = f" (and {total_invalid - len(problems)} more)" if total_invalid > len(problems) else ""
        super().__init__(f"{total_invalid} invalid sample(s), batch rejected: {shown}{more}")
        self.problems = problems


class UnknownDeploymentError(LookupError):
    """A sample or read named a deployment that does not exist."""


def to_epoch_s(moment: datetime) -> float:
    """Epoch seconds of an aware datetime (naive ones are refused: their zone is a guess)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware UTC datetime")
    return moment.timestamp()


class MetricsStore:
    """Read and write metric samples through one SQLAlchemy engine (Postgres or SQLite)."""

    def __init__(self, engine: Engine, max_future_skew_s: float = 300.0) -> None:
        self.engine = engine
        self.max_future_skew_s = max_future_skew_s
        self._deployment_ids: dict[str, int] = {}

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def deployment_id(self, name: str) -> int:
        """The id of the deployment called ``name``; raises UnknownDeploymentError."""
        cached = self._deployment_ids.get(name)
        if cached is not None:
            return cached
        with self.engine.connect() as connection:
            found = connection.execute(select(Deployment.id).where(Deployment.name == name)).scalar()
        if found is None:
            raise UnknownDeploymentError(f"unknown deployment {name!r}")
        self._deployment_ids[name] = found
        return found

    # -- writing -------------------------------------------------------------------------------------------

    def validate(self, samples: Sequence[Sample], now: float | None = None) -> None:
        """Raise InvalidSampleError naming every bad sample (up to ten) of the batch."""
        latest_allowed = (time.time() if now is None else now) + self.max_future_skew_s
        problems: list[str] = []
        invalid = 0
        for index, sample in enumerate(samples):
            problem = _sample_problem(sample, latest_allowed)
            if problem is not None:
                invalid += 1
                if len(problems) < 10:
                    problems.append(f"sample {index} ({sample.deployment}/{sample.metric}): {problem}")
        if invalid:
            raise InvalidSampleError(problems, invalid)

    def insert_samples(self, samples: Sequence[Sample], now: float | None = None) -> int:
        """Validate and upsert a batch in one transaction; returns the number of distinct keys written.

        The whole batch is rejected (InvalidSampleError, UnknownDeploymentError) before anything is written.
        Within a batch, a later sample for the same key wins.
        """
        if not samples:
            return 0
        self.validate(samples, now)
        ids = {name: self.deployment_id(name) for name in {sample.deployment for sample in samples}}
        latest: dict[tuple[int, str, float], float] = {}
        for sample in samples:
            latest[(ids[sample.deployment], sample.metric, float(sample.ts))] = float(sample.value)
        rows = [(key[0], key[1], key[2], value) for key, value in latest.items()]
        if self.is_postgres:
            self._upsert_postgres(rows)
        else:
            self._upsert_sqlite(rows)
        return len(rows)

    def _upsert_postgres(self, rows: list[tuple[int, str, float, float]]) -> None:
        statement = (
            "INSERT INTO metric_samples (deployment_id, metric, ts, value) "
            "SELECT d, m, to_timestamp(t), v FROM unnest(%s::int[], %s::text[], %s::float8[], %s::float8[]) "
            "AS u(d, m, t, v) "
            "ON CONFLICT (deployment_id, metric, ts) DO UPDATE SET value = EXCLUDED.value"
        )
        with self.engine.begin() as connection:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for start in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[start : start + CHUNK_ROWS]
                deployment_ids, metrics, stamps, values = (
                    list(column) for column in zip(*chunk, strict=True)
                )
                cursor.execute(statement, (deployment_ids, metrics, stamps, values))

    def _upsert_sqlite(self, rows: list[tuple[int, str, float, float]]) -> None:
        statement = text(
            "INSERT INTO metric_samples (deployment_id, metric, ts, value) VALUES (:d, :m, :t, :v) "
            "ON CONFLICT (deployment_id, metric, ts) DO UPDATE SET value = excluded.value"
        )
        params = [
            {"d": d, "m": m, "t": datetime.fromtimestamp(t, UTC).strftime(SQLITE_TS_FORMAT), "v": v}
            for d, m, t, v in rows
        ]
        with self.engine.begin() as connection:
            connection.execute(statement, params)

    # -- reading -------------------------------------------------------------------------------------------

    def read_range(
        self, deployment: str, metric: str, start: datetime, end: datetime
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Samples with ``start <= ts < end`` in time order: (epoch seconds, values)."""
        deployment_id = self.deployment_id(deployment)
        if self.is_postgres:
            return self._read_postgres(deployment_id, metric, start, end)
        return self._read_sqlite(deployment_id, metric, start, end)

    def _read_postgres(
        self, deployment_id: int, metric: str, start: datetime, end: datetime
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        # Two binary arrays in one row, parsed by numpy: far cheaper than 600k Python tuples or COPY messages.
        query = (
            "SELECT array_agg(ts), array_agg(value) FROM (SELECT ts, value FROM metric_samples "
            "WHERE deployment_id = %s AND metric = %s AND ts >= %s AND ts < %s ORDER BY ts) AS ordered"
        )
        with self.engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor(binary=True)  # type: ignore[union-attr]
            for array_oid in (TIMESTAMPTZ_ARRAY_OID, FLOAT8_ARRAY_OID):
                cursor.adapters.register_loader(array_oid, _RawBinaryLoader)
            cursor.execute(query, (deployment_id, metric, start, end))
            row = cursor.fetchone()
        if row is None or row[0] is None:
            return np.empty(0), np.empty(0)
        stamps = _parse_binary_array(row[0], ">i8") / 1e6 + POSTGRES_EPOCH_S
        values = _parse_binary_array(row[1], ">f8")
        if len(stamps) > 1 and np.any(np.diff(stamps) < 0):  # array_agg keeps the subquery order in practice
            order = np.argsort(stamps, kind="stable")
            stamps, values = stamps[order], values[order]
        return stamps, values

    def _read_sqlite(
        self, deployment_id: int, metric: str, start: datetime, end: datetime
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        query = text(
            "SELECT CAST(strftime('%s', ts) AS REAL) + CAST(substr(ts, 20) AS REAL), value FROM metric_samples "
            "WHERE deployment_id = :d AND metric = :m AND ts >= :start AND ts < :end ORDER BY ts"
        )
        params = {
            "d": deployment_id,
            "m": metric,
            "start": start.astimezone(UTC).strftime(SQLITE_TS_FORMAT),
            "end": end.astimezone(UTC).strftime(SQLITE_TS_FORMAT),
        }
        with self.engine.connect() as connection:
            rows = connection.execute(query, params).all()
        if not rows:
            return np.empty(0), np.empty(0)
        data = np.array([tuple(row) for row in rows], dtype=np.float64)  # Row objects: numpy is slow on them
        return data[:, 0], data[:, 1]

    def resample(
        self,
        deployment: str,
        metric: str,
        start: datetime,
        end: datetime,
        step_s: float,
        how: Aggregation = "mean",
    ) -> pd.Series:
        """Samples of ``[start, end)`` aggregated into bins of ``step_s`` seconds; empty bins are NaN.

        The index is the bins' start times (UTC); the result feeds the forecaster directly. Bins of whole minutes
        (mean, max or sum) are read from the per-minute rollups where the samples have been rolled up (and may
        have expired), and from the samples after that.
        """
        start_s, end_s = to_epoch_s(start), to_epoch_s(end)
        split_s = self._rollup_split(start_s, end_s, step_s, how)
        if split_s is None:
            stamps, values = self.read_range(deployment, metric, start, end)
            return resample_samples(stamps, values, start_s, end_s, step_s, how)
        split = datetime.fromtimestamp(split_s, UTC)
        r_stamps, r_mean, r_max, r_count = self.read_rollups(deployment, metric, start, split)
        stamps, values = self.read_range(deployment, metric, split, end)
        all_stamps = np.concatenate([r_stamps, stamps])
        if how == "max":
            return resample_samples(all_stamps, np.concatenate([r_max, values]), start_s, end_s, step_s, "max")
        if how == "sum":
            sums = np.concatenate([r_mean * r_count, values])
            return resample_samples(all_stamps, sums, start_s, end_s, step_s, "sum")
        weights = np.concatenate([r_count, np.ones(len(values))])
        return resample_samples(
            all_stamps, np.concatenate([r_mean, values]), start_s, end_s, step_s, "mean", weights=weights
        )

    def _rollup_split(self, start_s: float, end_s: float, step_s: float, how: str) -> float | None:
        """Where rollups stop serving a read of whole-minute bins (None: read the samples only)."""
        if how not in ("mean", "max", "sum") or step_s % 60 or start_s % 60:
            return None
        from prewarm.db.retention import rolled_up_until

        with self.engine.connect() as connection:
            rolled = rolled_up_until(connection)
        if rolled is None:
            return None
        split_s = math.floor(min(rolled.timestamp(), end_s) / 60) * 60
        return split_s if split_s > start_s else None

    def read_rollups(
        self, deployment: str, metric: str, start: datetime, end: datetime
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Per-minute rollups with ``start <= ts < end`` in time order: (minute starts, means, maxima, counts)."""
        deployment_id = self.deployment_id(deployment)
        if self.is_postgres:
            query = text(
                "SELECT extract(epoch FROM ts)::float8, mean, max, count FROM metric_rollups "
                "WHERE deployment_id = :d AND metric = :m AND ts >= :start AND ts < :end ORDER BY ts"
            )
            params: dict[str, object] = {"d": deployment_id, "m": metric, "start": start, "end": end}
        else:
            query = text(
                "SELECT CAST(strftime('%s', ts) AS REAL), mean, max, count FROM metric_rollups "
                "WHERE deployment_id = :d AND metric = :m AND ts >= :start AND ts < :end ORDER BY ts"
            )
            params = {
                "d": deployment_id, "m": metric,
                "start": start.astimezone(UTC).strftime(SQLITE_TS_FORMAT),
                "end": end.astimezone(UTC).strftime(SQLITE_TS_FORMAT),
            }  # fmt: skip
        with self.engine.connect() as connection:
            rows = connection.execute(query, params).all()
        if not rows:
            empty = np.empty(0)
            return empty, empty, empty, empty
        data = np.array([tuple(row) for row in rows], dtype=np.float64)  # Row objects: numpy is slow on them
        return data[:, 0], data[:, 1], data[:, 2], data[:, 3]

    def read_recent(
        self, since: Mapping[int, float], metrics: Sequence[str], until: float
    ) -> list[tuple[int, str, float, float]]:
        """Samples of several deployments at once: for each deployment id, those with ``since[id] < ts < until``
        of the given metrics, as (deployment id, metric, epoch seconds, value) in no particular order.

        One statement on Postgres (the primary key index per deployment), so a pass of the loop reads the new
        seconds of every due deployment together instead of a query per metric and deployment.
        """
        if not since:
            return []
        until_dt = datetime.fromtimestamp(until, UTC)
        if self.is_postgres:
            statement = (
                "SELECT s.deployment_id, s.metric, extract(epoch FROM s.ts)::float8, s.value "
                "FROM unnest(%s::int[], %s::float8[]) AS w(d, since) "
                "JOIN metric_samples s ON s.deployment_id = w.d AND s.ts > to_timestamp(w.since) "
                "AND s.ts < %s WHERE s.metric = ANY(%s::text[])"
            )
            with self.engine.connect() as connection:
                cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                cursor.execute(statement, (list(since), list(since.values()), until_dt, list(metrics)))
                return cursor.fetchall()
        rows: list[tuple[int, str, float, float]] = []
        query = text(
            "SELECT metric, CAST(strftime('%s', ts) AS REAL) + CAST(substr(ts, 20) AS REAL), value "
            "FROM metric_samples WHERE deployment_id = :d AND ts > :since AND ts < :until"
        )
        wanted = set(metrics)
        with self.engine.connect() as connection:
            for deployment_id, since_s in since.items():
                params = {
                    "d": deployment_id,
                    "since": datetime.fromtimestamp(since_s, UTC).strftime(SQLITE_TS_FORMAT),
                    "until": until_dt.strftime(SQLITE_TS_FORMAT),
                }
                rows.extend(
                    (deployment_id, metric, ts, value)
                    for metric, ts, value in connection.execute(query, params)
                    if metric in wanted
                )
        return rows

    def latest_timestamp(self, deployment: str, metric: str) -> datetime | None:
        """When the newest sample of this metric was taken, or None."""
        deployment_id = self.deployment_id(deployment)
        with self.engine.connect() as connection:
            found: datetime | None = connection.execute(
                select(MetricSample.ts)
                .where(MetricSample.deployment_id == deployment_id, MetricSample.metric == metric)
                .order_by(MetricSample.ts.desc())
                .limit(1)
            ).scalar()
        return found

    # -- retention -----------------------------------------------------------------------------------------

    def delete_older_than(self, cutoff: datetime, deployment: str | None = None) -> int:
        """Delete samples taken before ``cutoff`` (of one deployment, or all); returns how many."""
        statement = delete(MetricSample).where(MetricSample.ts < cutoff)
        if deployment is not None:
            statement = statement.where(MetricSample.deployment_id == self.deployment_id(deployment))
        with self.engine.begin() as connection:
            deleted = connection.execute(statement).rowcount
        logger.info("retention: deleted %d samples older than %s", deleted, cutoff.isoformat())
        return int(deleted)


def _sample_problem(sample: Sample, latest_allowed: float) -> str | None:
    if not isinstance(sample.metric, str) or not METRIC_NAME.match(sample.metric):
        return f"metric name {sample.metric!r} must match {METRIC_NAME.pattern}"
    try:
        ts, value = float(sample.ts), float(sample.value)
    except (TypeError, ValueError):
        return "timestamp and value must be numbers"
    if not math.isfinite(ts) or ts < EARLIEST_TS:
        return f"timestamp {sample.ts!r} is not epoch seconds after 2000-01-01"
    if ts > latest_allowed:
        return f"timestamp {ts:.0f} is in the future (more than the allowed skew ahead of now)"
    if not math.isfinite(value):
        return f"value {sample.value!r} is not a finite number"
    if value < 0:
        return f"value {value} is negative; rates, latencies and utilisations cannot be"
    return None


class _RawBinaryLoader(Loader):
    """Hand psycopg's binary array payload over untouched, for numpy to parse."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def _parse_binary_array(payload: bytes, element: str) -> npt.NDArray[np.float64]:
    """Parse a one-dimensional, NULL-free Postgres binary array of 8-byte elements."""
    if int.from_bytes(payload[0:4], "big") == 0:  # zero dimensions: empty array
        return np.empty(0)
    if int.from_bytes(payload[4:8], "big") != 0:
        raise ValueError("unexpected NULL in a metric array")
    length = int.from_bytes(payload[12:16], "big")
    records = np.frombuffer(
        payload, dtype=np.dtype([("width", ">i4"), ("value", element)]), offset=20, count=length
    )
    return records["value"].astype(np.float64)


def resample_samples(
    stamps: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    start_s: float,
    end_s: float,
    step_s: float,
    how: Aggregation = "mean",
    weights: npt.NDArray[np.float64] | None = None,
) -> pd.Series:
    """Aggregate irregular samples into fixed bins ``[start_s + k*step_s, ...)`` covering ``[start_s, end_s)``.

    ``weights`` (for ``mean``) counts how many samples each value stands for (a rollup's mean of ``count``)."""
    if step_s <= 0:
        raise ValueError(f"step_s must be positive, got {step_s}")
    bins = max(0, math.ceil((end_s - start_s) / step_s - 1e-9))
    index = pd.to_datetime(start_s + np.arange(bins) * step_s, unit="s", utc=True)
    result = np.full(bins, np.nan)
    if bins and len(stamps):
        position = np.floor((stamps - start_s) / step_s + 1e-9).astype(np.int64)
        keep = (position >= 0) & (position < bins)
        position, kept = position[keep], values[keep]
        counts = np.bincount(position, minlength=bins)
        filled = counts > 0
        if how == "mean" and weights is not None:
            kept_weights = weights[keep]
            totals = np.bincount(position, weights=kept * kept_weights, minlength=bins)
            weight_sums = np.bincount(position, weights=kept_weights, minlength=bins)
            filled = weight_sums > 0
            result[filled] = totals[filled] / weight_sums[filled]
        elif how in ("mean", "sum"):
            totals = np.bincount(position, weights=kept, minlength=bins)
            result[filled] = totals[filled] / counts[filled] if how == "mean" else totals[filled]
        elif how in ("max", "min"):
            fill = -np.inf if how == "max" else np.inf
            extreme = np.full(bins, fill)
            (np.maximum if how == "max" else np.minimum).at(extreme, position, kept)
            result[filled] = extreme[filled]
        elif how == "last":
            result[position] = kept  # stamps are sorted: later assignments win
        else:
            raise ValueError(f"unknown aggregation {how!r}")
    return pd.Series(result, index=index, name="value")


def iter_samples(
    deployment: str, metric: str, stamps: Iterable[float], values: Iterable[float]
) -> list[Sample]:
    """Build samples of one series from parallel sequences."""
    return [Sample(deployment, metric, float(ts), float(v)) for ts, v in zip(stamps, values, strict=True)]
