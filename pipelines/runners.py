"""Safe runner defaults for the `sea` pipelines.

* No ``--runner`` (or ``--runner=DirectRunner``): Beam 2.77's DirectRunner first
  tries PrismRunner, which downloads a Go binary from GitHub at run time (slow
  or failing without internet, with a logged exception). `sea` runs the same
  pipeline directly on Beam's in-process portable ``FnApiRunner`` - exactly
  what DirectRunner falls back to - honouring ``--direct_running_mode``
  (``in_memory`` | ``multi_threading`` | ``multi_processing``) and
  ``--direct_num_workers``. Without them the default is
  :data:`DEFAULT_LOCAL_MODE` with one worker per CPU. Beam's side-input / state
  cache is switched off for the thread workers (see :class:`LocalFnApiRunner`), and
  so is its construction-time type inference (as ``--no_pipeline_type_check``): it
  cost ~0.35 s per job build.
  ``--runner=PrismRunner`` still selects Prism.
* ``--runner=DaskRunner`` is short for Beam's
  ``apache_beam.runners.dask.dask_runner.DaskRunner`` (needs ``--dask_client_address``).
* ``--runner=PortableRunner --job_endpoint=embed`` without ``--environment_type``
  would start Docker SDK containers; `sea` uses ``LOOPBACK`` there (the in-process
  worker), which is what a local job service needs on a machine without Docker.
Anything else is passed to Beam unchanged (Dataflow, Flink, Spark, ...).
"""
from __future__ import annotations

import functools
import json
import logging
import os

from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                  PortableOptions, StandardOptions, TypeOptions)

__all__ = ["select_runner", "DASK_RUNNER", "DEFAULT_LOCAL_MODE"]

log = logging.getLogger(__name__)

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
DEFAULT_LOCAL_MODE = "multi_threading"
"""FnApiRunner running mode when none is given (with ``--direct_num_workers`` = CPUs).
Threads were the fastest mode for embed in ``benchmarks/embed_pipeline.py`` ``runner_modes``.
They once aborted the process (SIGABRT) while a worker thread sized a side input for Beam's
state cache (``statecache.get_deep_size`` -> objsize, which walks every module's globals);
:class:`LocalFnApiRunner` switches that cache off, so no worker thread runs that walk
(``tests/test_runner_soak.py``). ``--direct_running_mode=in_memory`` gives one in-process worker."""
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
        # Beam's construction-time type inference disassembles every DoFn's bytecode:
        # ~0.35 s of a 0.5-s embed graph build (a small --incremental refresh pays it in
        # full); our elements travel pickled either way
        options.view_as(TypeOptions).pipeline_type_check = False
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
        return _local_runner_class()(provision_info=provision), label
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


@functools.lru_cache(maxsize=None)
def _local_runner_class():
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.transforms.environments import EmbeddedPythonGrpcEnvironment

    class LocalFnApiRunner(fn_runner.FnApiRunner):
        """Beam's ``FnApiRunner`` whose thread workers (``multi_threading``) run without the
        SDK state cache.

        That cache holds side inputs and user state across bundles and weighs every value it
        stores with ``objsize.get_deep_size``, which also walks the globals of every loaded
        module (~5,000 with TensorFlow; ~5 ms a call) from the worker thread. Such a walk was on
        the stack of the one SIGABRT seen with threads. Our jobs read one small side input
        (the training set's PCA arrays) and keep no user state, so the cache buys nothing:
        without it a side input is decoded again per bundle. Beam offers no switch for it
        here: the thread environment's ``state_cache_size`` of 0 means "default" (100 MB,
        ``config.get('state_cache_size') or STATE_CACHE_SIZE_MB``), so a negative size is
        written into those environments, which makes ``StateCache.is_cache_enabled()`` false.
        ``tests/test_runner_soak.py`` checks that no deep-size walk happens.
        """

        def run_via_runner_api(self, pipeline_proto, options):
            for env in pipeline_proto.components.environments.values():
                if env.urn == python_urns.EMBEDDED_PYTHON_GRPC:
                    payload = env.payload.decode("utf-8") if env.payload else ""
                    cfg = EmbeddedPythonGrpcEnvironment.parse_config(payload) if payload else {}
                    cfg["state_cache_size"] = _NO_STATE_CACHE
                    env.payload = json.dumps(cfg).encode("utf-8")
            return super().run_via_runner_api(pipeline_proto, options)

    return LocalFnApiRunner


_NO_STATE_CACHE = -1
"""``state_cache_size`` (MB) that disables Beam's SDK state cache of a thread worker."""


def __getattr__(name):  # LocalFnApiRunner is built on first use (keeps Beam's runner imports lazy)
    if name == "LocalFnApiRunner":
        return _local_runner_class()
    raise AttributeError(name)

