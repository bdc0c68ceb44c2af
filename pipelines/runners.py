"""Safe runner defaults for the `sea` pipelines.

* No ``--runner`` (or ``--runner=DirectRunner``): Beam 2.77's DirectRunner first
  tries PrismRunner, which downloads a Go binary from GitHub at run time (slow
  or failing without internet, with a logged exception). `sea` runs the same
  pipeline directly on Beam's in-process portable ``FnApiRunner`` - exactly
  what DirectRunner falls back to - honouring ``--direct_running_mode``
  (``in_memory`` | ``multi_threading`` | ``multi_processing``) and
  ``--direct_num_workers``. Without them the default is
  :data:`DEFAULT_LOCAL_MODE` (see there: threads were faster in
  ``benchmarks/embed_pipeline.py`` ``runner_modes`` but not stable).
  ``--runner=PrismRunner`` still selects Prism.
* ``--runner=DaskRunner`` is short for Beam's
  ``apache_beam.runners.dask.dask_runner.DaskRunner`` (needs ``--dask_client_address``).
* ``--runner=PortableRunner --job_endpoint=embed`` without ``--environment_type``
  would start Docker SDK containers; `sea` uses ``LOOPBACK`` there (the in-process
  worker), which is what a local job service needs on a machine without Docker.
Anything else is passed to Beam unchanged (Dataflow, Flink, Spark, ...).
"""
from __future__ import annotations

import logging
import os

from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                  PortableOptions, StandardOptions)

__all__ = ["select_runner", "DASK_RUNNER", "DEFAULT_LOCAL_MODE"]

log = logging.getLogger(__name__)

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DEFAULT_LOCAL_MODE = "in_memory"
"""FnApiRunner running mode when none is given. ``multi_threading`` (one worker per CPU) was
faster for embed on the benchmark machine, but a full-suite run aborted the Python process
(SIGABRT inside Beam's state cache, objsize walking module globals from a worker thread) while
a side input was read; the single in-process worker is the stable default until that is
understood. ``--direct_running_mode=multi_threading`` opts in."""
_DIRECT_NAMES = {"directrunner", "direct", "switchingdirectrunner",
                 "apache_beam.runners.direct.direct_runner.directrunner",
                 "apache_beam.runners.direct.direct_runner.switchingdirectrunner"}


def select_runner(options: PipelineOptions):
    """The runner to hand to ``beam.Pipeline`` (an instance or a name), adjusting options in place.

    Returns
    -------
    runner : PipelineRunner or str
    label : str
        Human-readable name for the run summary.
    """
    std = options.view_as(StandardOptions)
    name = (std.runner or "").strip()
    low = name.lower()
    if not name or low in _DIRECT_NAMES:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        direct = options.view_as(DirectOptions)
        # flags given on the command line (even when equal to Beam's defaults) win
        given = {f.split("=", 1)[0].lstrip("-").replace("-", "_")
                 for f in getattr(options, "_flags", None) or () if f.startswith("--")}
        given |= set(options.get_all_options(drop_default=True))
        if "direct_running_mode" not in given:
            direct.direct_running_mode = DEFAULT_LOCAL_MODE
            if "direct_num_workers" not in given:
                direct.direct_num_workers = max(1, os.cpu_count() or 1)
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        direct = options.view_as(DirectOptions)
        mode = direct.direct_running_mode or "in_memory"
        label = f"FnApiRunner({mode}" + (f", workers={direct.direct_num_workers}"
                                          if mode != "in_memory" else "") + ")"
        if name:
            log.info("%s: running on Beam's in-process FnApiRunner (skipping the Prism download)",
                     name)
        return fn_runner.FnApiRunner(provision_info=provision), label
    if low in ("daskrunner", "dask"):
        std.runner = DASK_RUNNER
        return DASK_RUNNER, "DaskRunner"
    if low.endswith("portablerunner"):
        port = options.view_as(PortableOptions)
        if not port.environment_type and (port.job_endpoint or "embed") == "embed":
            port.environment_type = "LOOPBACK"
            log.info("PortableRunner with the embedded job service: using --environment_type=LOOPBACK")
        return name, f"PortableRunner({port.environment_type or 'DOCKER'}, "\
                     f"{port.job_endpoint or 'embed'})"
    return name, name.rsplit(".", 1)[-1]
