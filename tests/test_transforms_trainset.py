"""build-training-set's ProjectAndWrite alone on a TestPipeline (real frames Parquet, a real PCA artifact).

It lives in pipelines/build_training_set.py today (moving to pipelines/transforms/trainset.py).
"""
from __future__ import annotations

import json
from dataclasses import fields

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.trainset import ProjectAndWrite
from sea_core.datasets.frames import fixed_list_to_numpy, list_partitions, read_partition, window_ids
from sea_core.reduction import fit_reduction
from sea_core.datasets.schema import target_column, training_schema
from tests.test_training_set_pipeline import SAMPLES, make_frames

DIMS = (8, 4)


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return make_frames(tmp_path_factory.mktemp("trainset"), rows_per_part=10)


def test_project_and_write_shards_targets_and_counts(frames, tmp_path):
    parts = list_partitions(frames)[:4]
    splits = ["train", "train", "validate", "test"]
    emb = {(p.sensor, p.day): fixed_list_to_numpy(read_partition(p, ["teacher_emb"]).column("teacher_emb"))
           for p in parts}
    artifact = fit_reduction(np.concatenate(list(emb.values())), dims=DIMS, sampling_method="random",
                             teacher_id="test-teacher")
    arrays = {f.name: getattr(artifact, f.name) for f in fields(artifact)}
    out, counts_url = tmp_path / "trainset", str(tmp_path / ".counts.json")
    row_bytes = SAMPLES * 2 + sum(DIMS) * 4 + 64
    rows = {(p.sensor, p.day): p.rows for p in parts}
    expected = {"counts": {"train": rows[parts[0].sensor, parts[0].day] + rows[parts[1].sensor, parts[1].day],
                           "validate": parts[2].rows, "test": parts[3].rows},
                "shards": {"train": 2 * 4, "validate": 4, "test": 4}, "samples": SAMPLES}
    assert all(9 <= r <= 12 for r in rows.values())  # 3 rows per shard -> 4 shards each

    with test_pipeline.TestPipeline() as p:
        side = p | "Artifact" >> beam.Create([arrays])
        result = (p | "Parts" >> beam.Create(list(zip(parts, splits)))
                  | ProjectAndWrite(str(out), DIMS, side, 3 * row_bytes, counts_url))
        assert_that(result, equal_to([expected]))

    assert json.loads(open(counts_url).read()) == expected
    for part, split in zip(parts, splits):
        files = sorted((out / split).glob(f"part-{part.sensor}-{part.day}-*.parquet"))
        assert len(files) == 4
        t = pa.concat_tables([pq.read_table(f) for f in files])
        assert t.schema.equals(training_schema(list(DIMS), SAMPLES), check_metadata=False)
        src = read_partition(part, ["recording_id", "window_index", "student_audio"])
        assert t.column("window_id").to_pylist() == list(window_ids(src))
        np.testing.assert_array_equal(fixed_list_to_numpy(t.column("student_audio")),
                                      fixed_list_to_numpy(src.column("student_audio")))
        assert set(t.column("sensor").to_pylist()) == {part.sensor}
        for d in DIMS:
            got = np.asarray(t.column(target_column(d)).to_pylist(), np.float32)
            np.testing.assert_allclose(got, artifact.transform(emb[part.sensor, part.day], d),
                                       rtol=1e-6, atol=1e-6)
