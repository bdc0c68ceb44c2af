"""Beam ``PipelineOptions`` subclasses of the `sea` pipelines.

Every standard Beam flag (``--runner``, ``--direct_num_workers``,
``--direct_running_mode``, ``--job_endpoint``, ``--environment_type``, Dataflow
and Flink flags, ...) passes through untouched; the application flags are
declared here. Flags are registered only if no other ``PipelineOptions``
subclass has already declared the same option string (Beam parses the flags
of *every* subclass at once, and argparse refuses duplicates).
"""
from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from sea_core.params import DEFAULT_TEACHER, EMBED, TEACHER_BATCH_SIZE, TEACHER_NAMES

__all__ = ["EmbedOptions", "add_embed_arguments"]


def _add(parser, *names, **kwargs) -> None:
    existing = getattr(parser, "_option_string_actions", {})
    if any(n in existing for n in names):
        return
    parser.add_argument(*names, **kwargs)


def add_embed_arguments(parser: argparse.ArgumentParser) -> None:
    """The application flags of ``sea pipeline embed`` (dash and underscore spellings)."""
    _add(parser, "--input", dest="input", default=None,
         help="recordings: a glob (quote it), a directory, or a manifest file of URIs "
              "(.txt/.lst one per line, or .parquet with a 'uri' column); any fsspec URL")
    _add(parser, "--output", dest="output", default=None,
         help="output directory (any fsspec URL): frames/, dead_letter/, manifest.parquet, "
              "run_summary.json, _SUCCESS")
    _add(parser, "--teacher", dest="teacher", default=DEFAULT_TEACHER,
         help=f"teacher: {' | '.join(TEACHER_NAMES)} | path to a .keras/.h5/SavedModel "
              f"(default {DEFAULT_TEACHER})")
    _add(parser, "--teacher-opt", "--teacher_opt", dest="teacher_opt", action="append",
         default=None, metavar="KEY=VALUE",
         help="get_teacher option, repeatable (e.g. seed=0, weights=PATH, frontend=none, "
              "sample_rate=16000)")
    _add(parser, "--teacher-precision", "--teacher_precision", dest="teacher_precision",
         default=EMBED.teacher_precision, metavar="{auto,fp32,bf16}",
         help="teacher arithmetic: bf16 (bfloat16 compute on AMX-BF16 / AVX512-BF16 CPUs, "
              "~1.4-2.4x faster, cosine to fp32 >= 0.9999), fp32, or auto (default: bf16 when "
              "this machine's /proc/cpuinfo lists amx_bf16 or avx512_bf16, else fp32)")
    _add(parser, "--allow-mixed-precision", "--allow_mixed_precision",
         dest="allow_mixed_precision", action="store_true", default=False,
         help="let --incremental add rows of another teacher precision to an existing output "
              "(refused by default)")
    _add(parser, "--batch-size", "--batch_size", dest="batch_size", type=int,
         default=TEACHER_BATCH_SIZE,
         help="windows per teacher forward pass (every pass is exactly this size)")
    _add(parser, "--teacher-window", "--teacher_window", dest="teacher_window", default=None,
         help="aisfx analysis window: 1s (default: the students' 1 s of 8-kHz audio, 64 x 50 "
              "log-mel) or 2.30s (aisfx's native 100-frame block); part of the teacher id")
    _add(parser, "--hop-seconds", "--hop_seconds", dest="hop_seconds", type=float, default=None,
         help="hop between windows; default: the teacher's corpus hop (0.5 s for L3, "
              "1.16 s for aisfx)")
    _add(parser, "--shard-size", "--shard_size", dest="shard_size", type=int, default=EMBED.shard_size,
         help="recordings per work unit (decoded, scored and embedded together)")
    _add(parser, "--spl-sidecar", "--spl_sidecar", dest="spl_sidecar", default=None,
         help="directory of per-second SPL sidecars sensor_<id>/<day>/<ts>.csv|.parquet")
    _add(parser, "--require-sidecar", "--require_sidecar", dest="require_sidecar",
         action="store_true", default=False,
         help="a recording without a sidecar is a dead letter (default: computed SPL)")
    _add(parser, "--incremental", dest="incremental", action="store_true", default=False,
         help="process only recordings that are new or changed since the manifest; rebuild "
              "the affected partitions")
    _add(parser, "--allow-removals", "--allow_removals", dest="allow_removals",
         action="store_true", default=False,
         help="let an --incremental run remove more than 10%% of the manifest's recordings "
              "(refused by default: a mistyped glob must not wipe the output)")
    _add(parser, "--max-seconds", "--max_seconds", dest="max_seconds", type=float, default=None,
         help="longest recording accepted, seconds (default 600); longer ones, and files "
              "below 8 kHz, are dead letters (checked from the header before decoding)")
    _add(parser, "--sensors-csv", "--sensors_csv", dest="sensors_csv", default=None,
         help="per-sensor calibration_db (sensor,lat,lon,calibration_db); default: sensors.csv "
              "next to the corpus if present, else 120 dB for every sensor")


class EmbedOptions(PipelineOptions):
    """Options of ``sea pipeline embed`` (``pipelines.embed_corpus``)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_embed_arguments(parser)
