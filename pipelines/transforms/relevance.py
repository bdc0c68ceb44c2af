"""Stage 5, relevance: group by output partition, merge kept rows, score relative loudness.

Relevance (reference (e)) ranks a window's SPL among all windows of its
sensor in the same 2-hour bin of the local day, so it needs *every* window of
a (sensor, local day) partition: :class:`GroupByPartition` groups the items by
output key (frames of one sensor-day, or the dead letters), and
:class:`ScoreRelevance` builds the partition's Arrow table - new rows plus the
existing rows a :class:`Touch` says to keep (incremental refresh) - and
recomputes ``relevance`` over all of it. Partitions are local days in the
relevance time zone and each window is binned by its recording's start time,
so a 2-hour bin never straddles two partitions. Scores use the stored
float32 SPL so a partition rebuilt from old + new rows scores exactly as a
one-shot run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa

from pipelines.transforms.records import (FRAMES_KIND, METRICS_NAMESPACE, DeadLetter, Recording,
                                          Touch, partition_key)
from pipelines.transforms.write import (OutputLayout, drop_uris, fixed_list, keep_uris,
                                        read_table_or_none, sorted_table)
from sea_core import storage
from sea_core.params import RELEVANCE, RelevanceParams

__all__ = ["GroupByPartition", "ScoreRelevance", "ScoreConfig", "recordings_table",
           "dead_letter_table", "score_table"]


@dataclass(frozen=True)
class ScoreConfig:
    layout: OutputLayout
    teacher_id: str
    teacher_precision: str | None = None
    """Written to each frames file's metadata as ``sea.teacher_precision``."""
    relevance: RelevanceParams = RELEVANCE


def _explode(unit):
    for item in unit:
        yield partition_key(item), item


class GroupByPartition(beam.PTransform):
    """Units of items -> (partition key, [items]) with every item of that partition."""

    def expand(self, units):
        return (units
                | "KeyByPartition" >> beam.FlatMap(_explode)
                | "GroupByKey" >> beam.GroupByKey())


def recordings_table(recs: list[Recording], layout: OutputLayout, teacher_id: str) -> pa.Table:
    """Frames rows of ``recs`` (relevance still 1.0) with ``frames_schema``."""
    schema = layout.frames_schema()
    if not recs:
        return schema.empty_table()
    n = np.array([r.n_windows for r in recs])
    rep = lambda values: np.repeat(np.asarray(values, dtype=object), n).tolist()  # noqa: E731
    emb = np.concatenate([r.embeddings for r in recs]).astype(np.float32, copy=False)
    aud = np.concatenate([r.student_audio for r in recs]).astype(np.int16, copy=False)
    cols = {
        "recording_id": pa.array(rep([r.recording_id for r in recs]), pa.string()),
        "uri": pa.array(rep([r.uri for r in recs]), pa.string()),
        "sensor": pa.array(rep([r.sensor for r in recs]), pa.string()),
        "day": pa.array(rep([r.day for r in recs]), pa.string()),
        "start_time": pa.array(np.repeat(np.array([r.start_ms for r in recs], np.int64), n),
                               pa.timestamp("ms", tz="UTC")),
        "window_index": pa.array(np.concatenate([np.arange(k, dtype=np.int32) for k in n])),
        "window_start_s": pa.array(np.concatenate([r.window_start_s for r in recs])
                                   .astype(np.float32)),
        "spl_dba": pa.array(np.concatenate([r.spl_dba for r in recs]).astype(np.float32)),
        "spl_source": pa.array(rep([r.spl_source for r in recs]), pa.string()),
        "relevance": pa.array(np.ones(int(n.sum()), np.float32)),
        "teacher_id": pa.array([teacher_id] * int(n.sum()), pa.string()),
        "teacher_emb": fixed_list(emb, pa.float32()),
        "student_audio": fixed_list(aud, pa.int16()),
    }
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


def dead_letter_table(items: list[DeadLetter], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist([d.row() for d in items], schema=schema)


PRECISION_META = b"sea.teacher_precision"


def file_precision(uri: str) -> str:
    """``sea.teacher_precision`` of a frames file ('fp32' for files written before it was recorded)."""
    import pyarrow.parquet as pq

    fs, path = storage.url_to_fs(uri)
    with fs.open(path, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    return meta.get(PRECISION_META, b"fp32").decode()


def score_table(table: pa.Table, params: RelevanceParams = RELEVANCE) -> pa.Table:
    """Recompute the ``relevance`` column over all rows of a frames partition."""
    from sea_core.audio.spl import relevance_scores

    if table.num_rows == 0:
        return table
    spl = table.column("spl_dba").to_numpy().astype(np.float64)
    t = table.column("start_time").cast(pa.int64()).to_numpy() / 1000.0
    sensors = np.asarray(table.column("sensor").to_pylist(), dtype=object)
    scores = relevance_scores(spl, t, sensors, params).astype(np.float32)
    i = table.schema.get_field_index("relevance")
    return table.set_column(i, table.schema.field(i), pa.array(scores, pa.float32()))


class _ScorePartition(beam.DoFn):
    def __init__(self, cfg: ScoreConfig):
        super().__init__()
        self._cfg = cfg

    def setup(self):
        from apache_beam.metrics import Metrics

        self._ms = Metrics.distribution(METRICS_NAMESPACE, "relevance_ms")

    def process(self, keyed):
        key, items = keyed
        key = tuple(key)
        t0 = time.perf_counter()
        items = list(items)
        layout = self._cfg.layout
        schema = layout.schema(key)
        touches = [it for it in items if isinstance(it, Touch)]
        if key[0] == FRAMES_KIND:
            new = recordings_table(sorted((it for it in items if isinstance(it, Recording)),
                                          key=lambda r: r.uri), layout, self._cfg.teacher_id)
        else:
            new = dead_letter_table([it for it in items if isinstance(it, DeadLetter)], schema)
        keep = frozenset().union(*(t.keep_uris for t in touches)) if touches else frozenset()
        parts = [new]
        if keep:
            old = read_table_or_none(layout.path(key), schema)
            if old is not None:
                old = drop_uris(keep_uris(old, keep), new.column("uri").unique().to_pylist())
                parts.insert(0, old)
        table = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else new
        if key[0] == FRAMES_KIND:
            table = score_table(table, self._cfg.relevance)
            if self._cfg.teacher_precision:
                kinds = {self._cfg.teacher_precision}
                if len(parts) > 1 and parts[0].num_rows:
                    kinds |= set(file_precision(layout.path(key)).split("+"))
                meta = dict(table.schema.metadata or {})
                meta[PRECISION_META] = "+".join(sorted(kinds)).encode()
                table = table.replace_schema_metadata(meta)
        table = sorted_table(table, key[0]).combine_chunks()
        self._ms.update(int((time.perf_counter() - t0) * 1000))
        yield key, table


class ScoreRelevance(beam.PTransform):
    """(key, [items]) -> (key, sorted partition table with relevance recomputed)."""

    def __init__(self, cfg: ScoreConfig, label: str | None = None):
        super().__init__(label)
        self._cfg = cfg

    def expand(self, grouped):
        return grouped | "MergeAndScore" >> beam.ParDo(_ScorePartition(self._cfg))
