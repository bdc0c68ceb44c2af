"""fit-pca's transforms: selected rows -> float64 moments, merged across workers, written once.

:class:`GroupMoments` (selection shard URLs -> ``OUT/.moments-<hex>.npz``) chains
``_GroupMomentsFn`` (one shard: read its window ids, read the frames partitions
of those (sensor, day)s, keep the selected rows, reduce them to
:class:`~sea_core.reduction.Moments`), :class:`CombineStats` (a ``CombineFn``
merging :class:`GroupStats`) and ``_WriteMomentsFn`` (the final sink).
"""
from __future__ import annotations

import hashlib
import io

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sea_core import storage
from sea_core.datasets.frames import fixed_list_to_numpy, partition_files, read_files, window_ids
from sea_core.reduction import Moments

__all__ = ["GroupStats", "CombineStats", "GroupMoments"]


class GroupStats:
    """Moments of some selected rows + the bookkeeping the driver checks."""

    def __init__(self, moments: Moments | None = None, wanted: int = 0, found: int = 0,
                 teachers=(), digests=(), missing=()):
        self.moments = moments or Moments()
        self.wanted, self.found = int(wanted), int(found)
        self.teachers = set(teachers)
        self.digests = list(digests)   # (shard name, sha256 of its sorted ids): one per group
        self.missing = list(missing)   # (shard name, missing count), only shards with missing ids

    def merge(self, other: "GroupStats") -> "GroupStats":
        self.moments.merge(other.moments)
        self.wanted += other.wanted
        self.found += other.found
        self.teachers |= other.teachers
        self.digests += other.digests
        self.missing += other.missing
        return self


class CombineStats(beam.CombineFn):
    """Merge :class:`GroupStats` (float64 moments) across workers."""

    def create_accumulator(self):
        return GroupStats()

    def add_input(self, acc, stats):
        return acc.merge(stats)

    def merge_accumulators(self, accs):
        accs = iter(accs)
        out = next(accs)
        for a in accs:
            out.merge(a)
        return out

    def extract_output(self, acc):
        return acc


class _GroupMomentsFn(beam.DoFn):
    def __init__(self, frames: str):
        self.frames = frames

    def process(self, shard_url: str):
        fs, path = storage.url_to_fs(shard_url)
        with fs.open(path, "rb") as f:
            sel = pq.read_table(f, columns=["window_id", "sensor", "day"])
        name = shard_url.rsplit("/", 1)[-1]
        ids = sel.column("window_id")
        stats = GroupStats(wanted=sel.num_rows)
        stats.digests.append((name, hashlib.sha256(
            "\n".join(sorted(ids.to_pylist())).encode()).hexdigest()))
        wanted = pc.unique(ids)
        pairs = sorted(set(zip(sel.column("sensor").to_pylist(), sel.column("day").to_pylist())))
        for sensor, day in pairs:
            files = partition_files(self.frames, sensor, day)
            if not files:
                continue
            table = read_files(files, ["recording_id", "window_index", "teacher_id", "teacher_emb"])
            wid = pa.array(window_ids(table), pa.string())
            mask = pc.is_in(wid, value_set=wanted)
            sub = table.filter(mask)
            del table
            if not sub.num_rows:
                continue
            stats.moments.merge(Moments.of(fixed_list_to_numpy(sub.column("teacher_emb"))))
            stats.teachers.update(pc.unique(sub.column("teacher_id")).to_pylist())
            # distinct ids: two byte-identical recordings share their window ids
            stats.found += len(pc.unique(wid.filter(mask)))
        if stats.found != stats.wanted:
            stats.missing.append((name, stats.wanted - stats.found))
        beam.metrics.Metrics.counter("sea.fit_pca", "rows").inc(stats.found)
        yield stats


class _WriteMomentsFn(beam.DoFn):
    def __init__(self, url: str):
        self.url = url

    def process(self, stats: GroupStats):
        m = stats.moments
        buf = io.BytesIO()
        np.savez(buf, n=np.int64(m.n), mean=m.mean if m.mean is not None else np.zeros(0),
                 m2=m.m2 if m.m2 is not None else np.zeros((0, 0)),
                 wanted=np.int64(stats.wanted), found=np.int64(stats.found),
                 teachers=np.array(sorted(stats.teachers), dtype=str),
                 digests=np.array(sorted(f"{a}:{b}" for a, b in stats.digests), dtype=str),
                 missing=np.array([f"{a}:{b}" for a, b in sorted(stats.missing)], dtype=str))
        storage.publish_bytes(self.url, buf.getvalue())
        yield self.url


class GroupMoments(beam.PTransform):
    """Selection shard URLs -> one merged :class:`GroupStats` written to ``moments_url`` (final sink)."""

    def __init__(self, frames: str, moments_url: str):
        super().__init__()
        self.frames, self.moments_url = frames, moments_url

    def expand(self, shards):
        return (shards
                | "SpreadShards" >> beam.Reshuffle()
                | "ShardMoments" >> beam.ParDo(_GroupMomentsFn(self.frames))
                | "CombineMoments" >> beam.CombineGlobally(CombineStats()).without_defaults()
                | "WriteMoments" >> beam.ParDo(_WriteMomentsFn(self.moments_url)))
