"""The embed job graph does not grow with the corpus: the work units are read inside the pipeline."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.embed_corpus import EmbedConfig, build
from pipelines.transforms.list_inputs import ListInputs, make_units, stage_units
from pipelines.transforms.records import InputFile, Touch


def _manifest(path, n: int) -> str:
    uris = [f"/nowhere/upstream/sensor_{i % 50}/2019-03-{1 + i % 28:02d}/{1551400000 + i}.flac"
            for i in range(n)]
    path.write_text("\n".join(uris) + "\n")
    return str(path)


def _graph_bytes(tmp_path, n: int) -> int:
    cfg = EmbedConfig(input=_manifest(tmp_path / f"m{n}.txt", n), output=str(tmp_path / f"out{n}"),
                      teacher="l3-random")
    p = beam.Pipeline(options=PipelineOptions([]))
    build(p, cfg, units_url=str(tmp_path / f"units-{n:06d}.parquet"))  # same-length URL
    return len(p.to_runner_api().SerializeToString())


@pytest.mark.slow
def test_embed_graph_size_is_independent_of_the_corpus(tmp_path):
    small, large = _graph_bytes(tmp_path, 100), _graph_bytes(tmp_path, 100_000)
    assert large < 1_000_000 and small < 1_000_000
    assert abs(large - small) / small < 0.01, (small, large)


def test_staged_units_round_trip_in_a_pipeline(tmp_path):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that, equal_to

    files = [InputFile(uri=f"s3://b/u/sensor_1/2019-03-04/{i}.flac", size=i, version=f"v{i}")
             for i in range(300)]
    touches = [Touch(key=("frames", "1", "2019-03-04"), keep_uris=frozenset({"a", "b"})),
               Touch(key=("dead_letter",))]
    units = make_units(files, touches, shard_size=7)
    url = str(tmp_path / "units.parquet")
    assert stage_units(units, url) == 302
    expected = [tuple(u) for u in units]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        got = p | ListInputs(url) | beam.Map(tuple)
        assert_that(got, equal_to(expected))
