"""Orchestration above the Beam jobs and the library: the ``sea`` command line (:mod:`.cli`),
``sea run`` (:mod:`.run`), ``sea experiment ...`` (:mod:`.experiment`, :mod:`.experiment_poster`)
and the one select -> fit-pca -> build-training-set chain they share (:mod:`.chain`)."""
