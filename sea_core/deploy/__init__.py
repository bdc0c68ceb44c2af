"""``sea quantize``: a SEA student as a verified full-int8 TFLite-Micro deployment.

One module per step; :func:`quantize` (:mod:`~sea_core.deploy.command`) runs them in order:

==========================  =================================================================
:mod:`.data`                window length from the training set; representative and held-out
                            windows (seeded draw), as the model's float input
:mod:`.convert`             the student and the network to convert; TFLite full-int8
                            conversion; int4 filters and output-channel groups (flatbuffer)
:mod:`.graph`               ``.tflite`` inspection (ops, MACs, dtypes, I/O quantisation),
                            the full-int8 assertion, float <-> int8, flatbuffer pack/unpack
:mod:`.patch`               patch-based inference: plan, split into two stages, stitch
:mod:`.memory`              the memory search (``--optimize memory`` options, ``--int4``)
:mod:`.verify`              TFLite-Micro and reference-kernel runtimes, bit-exact and
                            fidelity checks
:mod:`.export`              C sources: model arrays, ``sea_embed``, front-end constants
:mod:`.report`              ``deploy_report.json/.md``, latency estimate, budget verdict
:mod:`.command`             :func:`quantize` and the ``sea quantize`` CLI (:func:`main`)
==========================  =================================================================
"""
from sea_core.deploy.command import OPTIMIZE_MODES, build_parser, main, quantize

__all__ = ["OPTIMIZE_MODES", "build_parser", "main", "quantize"]
