"""Run a built pipeline to completion and release the runner's resources (DaskRunner's Client)."""
from __future__ import annotations

import apache_beam as beam

from sea_core.errors import DataError

__all__ = ["run_to_completion"]


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
