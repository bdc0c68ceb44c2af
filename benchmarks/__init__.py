"""Benchmarks (each writes JSON to benchmarks/results/); shared helpers here and in synthetic.py."""
from __future__ import annotations

import resource


def peak_rss_bytes() -> int:
    """This process' peak resident set (``VmHWM`` of /proc/self/status).

    Not ``getrusage().ru_maxrss``: on Linux that high-water mark survives fork + exec,
    so a child started by a big parent reports the parent's RSS (seen: three different
    processes all reporting the benchmark parent's 556 MB). ``ru_maxrss`` only where
    /proc is absent.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
