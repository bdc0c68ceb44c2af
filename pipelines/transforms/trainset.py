"""build-training-set's transforms: project each (sensor, day) partition and write its shards.

:class:`ProjectAndWrite`: (partition, split) -> training shards under
``OUTPUT/<split>/part-<sensor>-<day>-<NNN>.parquet`` (~``shard_bytes`` each; the
table is :func:`sea_core.datasets.trainset.training_table`, written by
:func:`~sea_core.datasets.trainset.write_shard`), then the per-split row counts
summed by a ``CombineFn`` and written to ``counts_url`` by the final sink. The
scaler + PCA arrays arrive as a side input (they travel with the job).
"""
from __future__ import annotations

import apache_beam as beam

from sea_core import storage
from sea_core.datasets.frames import fixed_list_to_numpy, read_partition, window_ids
from sea_core.datasets.layout import trainset_shard_name
from sea_core.datasets.trainset import training_table, write_shard
from sea_core.reduction import ReductionArtifact

__all__ = ["ProjectAndWrite"]


class _ProjectAndWriteFn(beam.DoFn):
    def __init__(self, output: str, dims: tuple[int, ...], shard_bytes: int):
        self.output, self.dims, self.shard_bytes = output, dims, shard_bytes

    def process(self, element, artifact_arrays):
        part, split = element
        artifact = ReductionArtifact(**artifact_arrays)
        table = read_partition(part, ["recording_id", "window_index", "sensor", "day", "teacher_emb",
                                      "student_audio"])
        emb = fixed_list_to_numpy(table.column("teacher_emb"))
        samples = table.schema.field("student_audio").type.list_size
        out = training_table(window_ids=window_ids(table), sensors=table.column("sensor"),
                             days=table.column("day"), audio_int16=table.column("student_audio"),
                             targets={d: artifact.transform(emb, d) for d in self.dims})
        row_bytes = samples * 2 + sum(self.dims) * 4 + 64
        rows_per_shard = max(1, self.shard_bytes // row_bytes)
        shards = 0
        for i, start in enumerate(range(0, out.num_rows, rows_per_shard)):
            write_shard(storage.join(self.output, split, trainset_shard_name(part.sensor, part.day, i)),
                        out.slice(start, rows_per_shard))
            shards += 1
            beam.metrics.Metrics.counter("sea.training_set", f"rows.{split}").inc(
                min(rows_per_shard, out.num_rows - start))
        yield {"counts": {split: out.num_rows}, "shards": {split: shards}, "samples": samples}


class _SumCounts(beam.CombineFn):
    def create_accumulator(self):
        return {"counts": {}, "shards": {}, "samples": None}

    def add_input(self, acc, x):
        for key in ("counts", "shards"):
            for split, n in x[key].items():
                acc[key][split] = acc[key].get(split, 0) + int(n)
        acc["samples"] = acc["samples"] or x["samples"]
        return acc

    def merge_accumulators(self, accs):
        out = self.create_accumulator()
        for a in accs:
            self.add_input(out, a)
        return out

    def extract_output(self, acc):
        return acc


class _WriteCountsFn(beam.DoFn):
    def __init__(self, url: str):
        self.url = url

    def process(self, counts):
        storage.publish_json(self.url, counts)
        yield counts


class ProjectAndWrite(beam.PTransform):
    """(partition, split) -> shards under ``output/<split>/``; row counts per split -> ``counts_url``."""

    def __init__(self, output: str, dims: tuple[int, ...], artifact_arrays, shard_bytes: int,
                 counts_url: str):
        super().__init__()
        self.output, self.dims, self.shard_bytes = output, dims, shard_bytes
        self.artifact_arrays, self.counts_url = artifact_arrays, counts_url

    def expand(self, pcoll):
        return (pcoll
                | "SpreadPartitions" >> beam.Reshuffle()
                | "ProjectWrite" >> beam.ParDo(_ProjectAndWriteFn(self.output, self.dims, self.shard_bytes),
                                               beam.pvalue.AsSingleton(self.artifact_arrays))
                | "SumCounts" >> beam.CombineGlobally(_SumCounts()).without_defaults()
                | "WriteCounts" >> beam.ParDo(_WriteCountsFn(self.counts_url)))
