"""Informed selection of the PCA fitting set: random, relevance, diversity, diversity+relevance.

One entry point, :func:`select`, groups the windows per sensor and per period
(day / ISO week / month), gives each group the reference budget [ref (e)] and
samples each group independently:

* sensor budget = ``ceil(total / n_sensors)`` (``total`` with ``per_sensor_budget``),
  ``n_sensors`` = sensors present in ``frames``;
* per-group ``k = ceil(sensor budget / groups of that sensor)``;
* a group smaller than its ``k``: ``policy='whole'`` takes the whole group,
  ``policy='skip'`` selects nothing (the reference's silent skip); both are
  listed in :attr:`Selection.small_groups`.

Methods
-------
``random``
    Uniform without replacement.
``relevance``
    Relevance-weighted without replacement (``p ∝ q``).
``diversity``
    k-DPP with ``L = F Fᵀ + c·I`` (``F`` L1-normalised rows, ``c = 0.1``).
``diversity+relevance``
    k-DPP with ``L = diag(q) F Fᵀ diag(q) + c·I``.

Modes (DPP methods only)
------------------------
``reference``
    The authors' DPPy call, verbatim: ``FiniteDPP('likelihood', L=L).sample_mcmc_k_dpp(
    size=k, s_init=RandomState(413121).choice(n, k), nb_iter=3,
    random_state=RandomState(seed))``, keeping the last state. Dense ``L``; groups
    above ``SamplingParams.reference_max_group`` are refused. Its measured traps
    (``../shared/docs/dependencies.md`` §2) are detected and reported per group:
    ``few_swaps`` (how many indices moved from the start: at most 2),
    ``det_underflow`` (``det(L_start)`` underflows to 0 so the chain returns the
    start), ``duplicate_start`` (the with-replacement start; duplicates are never
    passed on: the result is de-duplicated and topped up deterministically).
``exact``
    An exact k-DPP sample through the dual kernel (:func:`sea_core.dpp.sample_k_dpp`).
``scalable``
    Greedy MAP (:func:`sea_core.dpp.greedy_map`) for every group size. Chosen so
    that the meaning of a mode does not change with the group size: 'scalable'
    always *maximises* ``det(L_Y)`` (deterministic, ignores the seed), 'exact'
    always *samples* it. Greedy is ``O(N k (D + k))``; exact is ``O(N D² + N k (D + k))``.

BLAS runs single-threaded inside a group (:func:`sea_core.dpp.single_thread_blas`):
the per-group LAPACK calls are small and the greedy / projection loops memory-bound,
so threads only add synchronisation on a shared machine; parallelism belongs at
the group level (the Beam stage samples groups in parallel).

Determinism: each group draws from ``np.random.Generator(PCG64(SeedSequence([seed,
*sha256(group key)])))``, so a group's result does not depend on which other
groups exist or their order. The reference mode reproduces the authors' seeding
(the same ``RandomState(413121)`` start and ``RandomState(seed)`` for every group).

Every selection reports ``log det(L_Y)`` per group under both kernels
('diversity' and, when relevance is present, 'diversity+relevance'), whatever
the method, so methods can be compared; the total is the sum over groups (the
corpus kernel is block-diagonal over groups).

Modules: :mod:`~sea_core.sampling.options` (the choices, their ONE validator
:func:`check_options`, group labels), :mod:`~sea_core.sampling.results`
(:class:`GroupResult`, :class:`Selection`), :mod:`~sea_core.sampling.group` (seeds,
budgets, one group's selection, time blocks of a large group) and
:mod:`~sea_core.sampling.selection` (:func:`select` over a frames table).
"""
from __future__ import annotations

from sea_core.sampling.group import group_rng, plan_budget, sample_group, sample_group_bounded, split_blocks
from sea_core.sampling.options import (DPP_METHODS, METHODS, MODES, PERIODS, POLICIES, RELEVANCE_METHODS,
                                       check_options, group_label)
from sea_core.sampling.results import GroupResult, Selection
from sea_core.sampling.selection import period_labels, select

__all__ = ["METHODS", "MODES", "PERIODS", "POLICIES", "DPP_METHODS", "RELEVANCE_METHODS", "check_options",
           "GroupResult", "Selection", "select", "sample_group", "sample_group_bounded", "split_blocks",
           "plan_budget", "group_rng", "period_labels", "group_label"]
