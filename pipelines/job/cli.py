"""The ``sea`` command line: a thin dispatcher.

Each command lives in its own module that exposes ``main(argv) -> int`` and
builds its own ``argparse`` parser (``prog='sea <command>'``). This module only
maps command words to modules, sets up logging and turns a :class:`SeaError`
into a one-line message and exit status 2.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

from sea_core.errors import SeaError

# (command words, module, one-line help). Modules are imported only when used.
COMMANDS: list[tuple[str, str, str]] = [
    ("synth", "sea_core.synth", "generate the deterministic SONYC-like demo corpus"),
    ("embed", "sea_core.api", "embed audio files with a SEA student or a teacher (edgel3-style)"),
    ("models", "sea_core.models.store", "list / show / import models in the local store"),
    ("pipeline select", "pipelines.select", "informed sampling of the PCA fitting set (Beam)"),
    ("pipeline fit-pca", "pipelines.fit_pca", "fit scaler + PCA on the selected windows"),
    ("pipeline build-training-set", "pipelines.build_training_set",
     "PCA targets for every window -> Parquet training shards (Beam)"),
    ("train", "sea_core.train", "train a SEA student by streaming a Parquet training set"),
    ("evaluate", "sea_core.evaluate", "downstream SONYC-UST-layout evaluation (AUPRC)"),
    ("run", "pipelines.job.run", "the whole job end to end: corpus -> ... -> int8 student + report"),
    ("quantize", "sea_core.deploy", "int8 TFLite + TFLite-Micro check + C export + board budget report"),
    ("pipeline embed", "pipelines.embed_corpus", "Beam: corpus -> teacher embeddings + SPL + relevance (Parquet)"),
    ("experiment", "pipelines.job.experiment",
     "the paper's tables on a finished run: `experiment sampling` / `experiment students`"),
    ("prune", "sea_core.prune", "sparse teacher: magnitude pruning + optional distillation (--retrain kd)"),
    ("plan", "sea_core.plan_cli", "capacity model: windows, bytes, CPU/GPU hours and cost of a corpus"),
]


def _usage() -> str:
    width = max(len(words) for words, _, _ in COMMANDS)
    lines = ["usage: sea [-v|-q] <command> [options]   (sea <command> --help for details)", "",
             "commands:"]
    lines += [f"  {words:<{width}}  {help_}" for words, _, help_ in COMMANDS]
    return "\n".join(lines)


def _resolve(argv: list[str]) -> tuple[str, str, list[str]] | None:
    """Longest command-word prefix of argv -> (words, module, remaining argv)."""
    for words, module, _ in sorted(COMMANDS, key=lambda c: -len(c[0].split())):
        n = len(words.split())
        if argv[:n] == words.split():
            return words, module, argv[n:]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    level = logging.INFO
    while argv and argv[0] in ("-v", "--verbose", "-q", "--quiet"):
        level = logging.DEBUG if argv.pop(0) in ("-v", "--verbose") else logging.WARNING
    # TensorFlow's C++ log lines (oneDNN / CPU-feature notes, 'E0000 ... NodeDef mentions
    # attribute use_unbounded_threadpool') look like errors to a user: hidden unless -v.
    # Read when TensorFlow starts, so set before any command imports it; the user's own
    # TF_CPP_MIN_LOG_LEVEL wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if level == logging.DEBUG else "3")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    found = _resolve(argv)
    if found is None:
        print(f"sea: unknown command {' '.join(argv[:2])!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    words, module, rest = found
    try:
        return int(importlib.import_module(module).main(rest) or 0)
    except SeaError as exc:
        print(f"sea {words}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sea {words}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
