"""The embed job graphs do not grow with the corpus: work units and manifests are read inside the
pipelines (the embed job, and for --incremental the plan and finalize jobs around it)."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.embed_config import EmbedConfig
from pipelines.embed_corpus import build
from pipelines.transforms.list_inputs import ListInputs, stage_units
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
    build(p, cfg)  # runs the plan job in-process; its staging is a same-length temp dir
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
    units = [files[i:i + 7] for i in range(0, len(files), 7)] + [touches]  # shards of 7, touches
    url = str(tmp_path / "units.parquet")
    assert stage_units(units, url) == 302
    expected = [tuple(u) for u in units]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        got = p | ListInputs(url) | beam.Map(tuple)
        assert_that(got, equal_to(expected))


def _incremental_graphs(tmp_path, n: int) -> dict[str, int]:
    """Serialized sizes of the three jobs of an --incremental run over an output whose
    manifest holds ``n`` recordings (and an input listing ``n`` URIs)."""
    from pipelines.embed_config import _resolve
    from pipelines.transforms.diff import PlanRefresh, StagedPlan
    from pipelines.transforms.finalize import FinalizeManifest
    from pipelines.transforms.manifest import ManifestRow, manifest_footer, write_manifest

    out = tmp_path / f"out{n:06d}"                      # same-length paths for both sizes
    cfg = EmbedConfig(input=_manifest(tmp_path / f"m{n:06d}.txt", n), output=str(out),
                      teacher="l3-random", incremental=True)
    resolved = _resolve(cfg)
    settings = resolved.settings(cfg)
    uris = [ln for ln in open(cfg.input).read().splitlines() if ln]
    rows = {u: ManifestRow(uri=u, size=10, version="mtime:1", content_hash="h", run_id="r",
                           status="ok", sensor=u.split("/")[-3][7:], day=u.split("/")[-2],
                           windows=10) for u in uris}
    manifest = f"{out}/manifest.parquet"
    write_manifest(manifest, rows, settings)
    assert manifest_footer(manifest)[1] == n          # the launcher reads the footers only
    staging = str(tmp_path / f"staging{n:06d}")
    sizes = {}
    p = beam.Pipeline(options=PipelineOptions([]))
    p | PlanRefresh(cfg.input, manifest, str(out), staging, incremental=True, shard_size=16,
                    settings=settings, params=resolved.relevance)
    sizes["plan"] = len(p.to_runner_api().SerializeToString())
    staged = StagedPlan(staging=staging, counts={}, incremental=True, manifest_rows=n)
    p = beam.Pipeline(options=PipelineOptions([]))
    build(p, cfg, run_plan=staged, resolved=resolved)
    sizes["embed"] = len(p.to_runner_api().SerializeToString())
    p = beam.Pipeline(options=PipelineOptions([]))
    p | FinalizeManifest(staged.units_url, staged.keep_url, resolved.layout, f"{staging}/final",
                         run_id="r", settings=settings, n_shards=1)
    sizes["finalize"] = len(p.to_runner_api().SerializeToString())
    return sizes


def test_incremental_graphs_are_independent_of_the_manifest(tmp_path):
    small, large = _incremental_graphs(tmp_path, 100), _incremental_graphs(tmp_path, 100_000)
    for job in ("plan", "embed", "finalize"):
        assert small[job] < 1_000_000 and large[job] < 1_000_000, (job, small, large)
        assert abs(large[job] - small[job]) / small[job] < 0.01, (job, small, large)
