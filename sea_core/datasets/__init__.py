"""The data the system reads and writes: names, schemas, readers.

* :mod:`~sea_core.datasets.layout`: every directory / file name (and ``SPLITS``).
* :mod:`~sea_core.datasets.schema`: the Parquet schemas and their versions.
* :mod:`~sea_core.datasets.frames`: the plain pyarrow reader of the embed pipeline's frames.
* :mod:`~sea_core.datasets.trainset`: the training set's table, shards and card.

Plain pyarrow + fsspec: nothing here imports Beam or ``pipelines``.
"""
