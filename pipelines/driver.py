"""Run a built pipeline to completion (releasing the runner's resources), or run one sink DoFn /
one global combine of a pipeline in this process, without a Beam job."""
from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam

from sea_core.errors import DataError

__all__ = ["run_to_completion", "run_sink", "combine_globally"]


def run_to_completion(p: beam.Pipeline, label: str = "") -> None:
    """``p.run().wait_until_finish()``; closes DaskRunner's own dask Client afterwards.

    ``with beam.Pipeline(...)`` leaves the Client that DaskRunner opens per job
    connected; a driver running several jobs would accumulate them.
    """
    result = p.run()
    try:
        state = result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()
    if state is not None and str(state).split(".")[-1] not in ("DONE", "UNKNOWN"):
        raise DataError(f"pipeline{' ' + label if label else ''} ended in state {state}")


def run_sink(fn: beam.DoFn, items: Iterable) -> None:
    """Run the sink ``fn`` over ``items`` as one bundle in this process (its DoFn lifecycle:
    setup, start_bundle, process per item, finish_bundle, teardown); a sink outputs nothing."""
    fn.setup()
    fn.start_bundle()
    for item in items:
        for _ in fn.process(item) or ():
            raise DataError(f"{type(fn).__name__} is a sink but produced an output")
    fn.finish_bundle()
    fn.teardown()


def combine_globally(fn: beam.CombineFn, items: Iterable):
    """``beam.CombineGlobally(fn).without_defaults()`` in this process: the combined value,
    or None when there are no items."""
    acc, seen = fn.create_accumulator(), False
    for item in items:
        acc, seen = fn.add_input(acc, item), True
    return fn.extract_output(acc) if seen else None
