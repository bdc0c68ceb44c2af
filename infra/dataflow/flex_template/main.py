"""Flex Template entry point of `sea pipeline embed` (FLEX_TEMPLATE_PYTHON_PY_FILE).

The template launcher passes every parameter as ``--name=value``. Boolean
template parameters arrive as ``--incremental=true|false``, which the
pipeline's ``store_true`` flags do not accept: :func:`translate` turns them
into ``--incremental`` (or drops them); every other flag passes through to
:func:`pipelines.embed_corpus.parse_args` unchanged (Beam / Dataflow options included).
"""
from __future__ import annotations

import logging
import sys

BOOL_PARAMS = ("incremental", "require_sidecar")
"""Template parameters that map to store_true flags of the embed pipeline."""

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def translate(argv: list[str]) -> list[str]:
    """Template-launcher flags -> embed-pipeline flags.

    Raises
    ------
    ValueError
        A boolean parameter with a value other than true/false.
    """
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        key = name.lstrip("-").replace("-", "_")
        if name.startswith("--") and key in BOOL_PARAMS:
            v = value.strip().lower() if eq else "true"
            if v in _TRUE:
                out.append(f"--{key}")
            elif v not in _FALSE:
                raise ValueError(f"{name}: expected true or false, got {value!r}")
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    from pipelines.embed_corpus import parse_args, run

    summary = run(*parse_args(translate(list(sys.argv[1:] if argv is None else argv))))
    c = summary["counts"]
    logging.info("embed: %d inputs = %d ok + %d dead-lettered, %d windows -> %s",
                 c["inputs"], c["ok"], c["dead_lettered"], c["windows"], summary["output"])
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
