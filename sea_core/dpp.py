"""DPP maths on the low-rank kernel ``L = B Bᵀ + c·I`` (never materialised).

``B`` [N, D] holds one feature row per item: the L1-normalised teacher
embedding, optionally scaled by the item's relevance ``q`` [ref (e)]:

* ``diversity``:            ``B = F``            ->  ``L = F Fᵀ + c·I``
* ``diversity+relevance``:  ``B = diag(q) F``    ->  ``L = diag(q) F Fᵀ diag(q) + c·I``

with ``c = SamplingParams.dpp_diag`` (0.1). Everything is computed in
log-determinants (Cholesky), so nothing underflows for large ``k``.

Two algorithms:

:func:`sample_k_dpp`
    An exact k-DPP sample (Kulesza & Taskar 2012, alg. 8) from the spectrum of
    ``L``. When ``N > D`` the spectrum comes from the D x D *dual* matrix
    ``C = BᵀB = V Λ Vᵀ``: the eigenvalues of ``L`` are ``λ_i + c`` with
    eigenvectors ``u_i = B v_i / sqrt(λ_i)`` (for ``λ_i > 0``, rank ``r``) plus
    ``c`` with multiplicity ``N - r`` on the orthogonal complement of
    ``span(B)``. The elementary-symmetric-polynomial step treats that
    eigenspace analytically (``j`` complement directions are chosen with weight
    ``e_{k-j}(λ+c) · C(N-r, j) · c^j``) and draws the ``j`` directions as a
    Haar-random orthonormal frame of the complement (a projected Gaussian,
    re-orthonormalised). Because all complement eigenvalues are equal, the
    mixture over random frames is the same k-DPP as the mixture over subsets of
    any fixed basis. Cost ``O(N D² + N k (D + k))`` time, ``O(N (D + k))``
    memory; a dense ``N x N`` eigendecomposition is only used when ``N <= D``.
:func:`greedy_map`
    Greedy MAP inference with incremental Cholesky (Chen, Zhang & Zhou,
    NeurIPS 2018): ``O(N k (D + k))`` time, ``O(N k)`` memory, deterministic.

Note on the authors' kernel: L1-normalised 512-d rows have tiny squared L2
norms (about 1/512 for dense non-negative vectors), so apart from a few
dominant directions the spectrum of ``B Bᵀ`` is far below ``c = 0.1`` and the
k-DPP is close to uniform. Greedy MAP is what separates strongly from random.
"""
from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from sea_core.errors import ParameterError

__all__ = ["choose_eigenvectors", "single_thread_blas", "l1_normalise", "dpp_features",
           "logdet_subset", "log_elementary_symmetric",
           "sample_k_dpp", "sample_projection_dpp", "greedy_map", "dense_kernel"]


def l1_normalise(emb: np.ndarray, *, dtype=np.float64) -> np.ndarray:
    """Rows divided by their L1 norm (all-zero rows stay zero).

    Parameters
    ----------
    emb : np.ndarray [N, D]
    dtype : numpy dtype
        Output dtype (float64 by default; greedy MAP uses float32).

    Returns
    -------
    np.ndarray [N, D] of ``dtype``
    """
    return dpp_features(emb, None, dtype=dtype)


def dpp_features(emb: np.ndarray, relevance: np.ndarray | None = None, *, dtype=np.float64) -> np.ndarray:
    """``B = diag(q) F`` with ``F`` the L1-normalised rows (``q = 1`` when ``relevance`` is None).

    One pass over ``emb``: a per-row scale ``q_i / ||x_i||_1`` (0 for all-zero rows)
    is computed first and applied once.
    """
    x = np.asarray(emb, dtype=dtype)
    norm = np.abs(x).sum(axis=1, dtype=np.float64)
    scale = np.divide(1.0, norm, out=np.zeros_like(norm), where=norm > 0)
    if relevance is not None:
        scale *= np.asarray(relevance, dtype=np.float64)
    return x * scale.astype(dtype)[:, None]


def dense_kernel(b: np.ndarray, c: float) -> np.ndarray:
    """The dense ``N x N`` kernel ``B Bᵀ + c·I`` (reference mode and tests only)."""
    ell = b @ b.T
    ell[np.diag_indices_from(ell)] += c
    return ell


def logdet_subset(b: np.ndarray, idx, c: float) -> float:
    """``log det(L_Y)`` for ``L = B Bᵀ + c·I`` and ``Y = idx`` (Cholesky; 0.0 for an empty set).

    Duplicate indices make ``L_Y`` singular and give ``-inf``.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size == 0:
        return 0.0
    by = b[idx]
    ly = by @ by.T
    ly[np.diag_indices_from(ly)] += c
    try:
        chol = np.linalg.cholesky(ly)
        return float(2.0 * np.log(np.diag(chol)).sum())
    except np.linalg.LinAlgError:
        sign, ld = np.linalg.slogdet(ly)
        return float(ld) if sign > 0 else float("-inf")


def log_elementary_symmetric(log_mu: np.ndarray, k: int) -> np.ndarray:
    """``E[l, n] = log e_l(mu_1..mu_n)`` for ``l <= k``, ``n <= len(mu)`` (log-space recursion).

    Returns
    -------
    np.ndarray [k + 1, len(mu) + 1] float64 (``-inf`` where ``e_l = 0``)
    """
    r = len(log_mu)
    e = np.full((k + 1, r + 1), -np.inf)
    e[0, :] = 0.0
    for n in range(1, r + 1):
        e[1:, n] = np.logaddexp(e[1:, n - 1], log_mu[n - 1] + e[:-1, n - 1])
    return e


_CONTROLLER = []


def choose_eigenvectors(log_mu: np.ndarray, e: np.ndarray, n: int, k: int,
                        rng: np.random.Generator) -> list[int]:
    """Phase 1 of Kulesza & Taskar's Alg. 8: which k of the first ``n`` eigenvectors (log
    eigenvalues ``log_mu``, log elementary symmetric table ``e``) span the k-DPP sample."""
    chosen, left = [], k
    for m in range(n, 0, -1):
        if left == 0:
            break
        if m == left:
            chosen.extend(range(m - 1, -1, -1))
            break
        p = np.exp(log_mu[m - 1] + e[left - 1, m - 1] - e[left, m])
        if rng.random() < p:
            chosen.append(m - 1)
            left -= 1
    return chosen


def single_thread_blas():
    """Context limiting BLAS/LAPACK to one thread (no-op without threadpoolctl).

    The DPP steps are small LAPACK calls and memory-bound matrix-vector loops; on a
    shared 2-core machine a multi-threaded OpenBLAS spends its time synchronising
    (measured: eigh of 67 x 67 at 80 ms, greedy MAP 10x slower). Parallelism belongs
    at the group level (groups are sampled independently). threadpoolctl ships with
    scikit-learn; its controller is created once.
    """
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _log_comb(n: int, j: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(j + 1) - gammaln(n - j + 1)


def _spectrum(b: np.ndarray, rtol: float):
    """(U-builder, eigenvalues λ >= 0 of B Bᵀ restricted to span(B), rank r, dense?)."""
    n, d = b.shape
    if n <= d:
        lam, u = np.linalg.eigh(b @ b.T)
        return np.clip(lam, 0.0, None), u, True
    lam, v = np.linalg.eigh(b.T @ b)
    top = lam.max() if lam.size else 0.0
    keep = lam > rtol * top if top > 0 else np.zeros(lam.shape, bool)
    return lam[keep], v[:, keep], False


def sample_projection_dpp(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample the projection DPP with kernel ``K = V Vᵀ`` (``V`` [N, k] orthonormal columns).

    Sequential chain rule with incremental Cholesky: ``O(N k²)`` time, ``O(N k)`` memory.

    Returns
    -------
    np.ndarray [k] int64, in the order drawn.
    """
    with single_thread_blas():
        return _sample_projection_dpp(v, rng)


def _sample_projection_dpp(v: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, k = v.shape
    resid = np.einsum("ij,ij->i", v, v)
    cvec = np.empty((k, n))
    out = np.empty(k, dtype=np.int64)
    for t in range(k):
        p = np.clip(resid, 0.0, None)
        p[out[:t]] = 0.0
        cum = np.cumsum(p)
        i = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        i = min(i, n - 1)
        out[t] = i
        if t == k - 1:
            break
        col = v @ v[i]
        e = (col - cvec[:t].T @ cvec[:t, i]) / np.sqrt(resid[i])
        cvec[t] = e
        resid -= e * e
    return out


def sample_k_dpp(b: np.ndarray, c: float, k: int, rng: np.random.Generator, *,
                 rtol: float = 1e-9) -> tuple[np.ndarray, dict]:
    """Exact sample of the k-DPP with ``L = B Bᵀ + c·I`` (see the module docstring).

    Parameters
    ----------
    b : np.ndarray [N, D]
        Feature rows (float64).
    c : float
        Diagonal term, > 0.
    k : int
        Sample size, ``1 <= k <= N``.
    rng : np.random.Generator
    rtol : float
        Dual eigenvalues below ``rtol * max`` are treated as 0.

    Returns
    -------
    indices : np.ndarray [k] int64, sorted
    info : dict
        ``route`` ('dual' or 'dense'), ``rank`` r, ``n_complement`` j (directions
        drawn from the c-only eigenspace).

    Raises
    ------
    ParameterError
        If ``k`` is out of range or ``c <= 0``.
    """
    n, _ = b.shape
    if not 1 <= k <= n:
        raise ParameterError(f"k-DPP: k must be in [1, {n}], got {k}")
    if not c > 0:
        raise ParameterError(f"k-DPP: diagonal term c must be > 0, got {c}")
    with single_thread_blas():
        return _sample_k_dpp(b, c, k, rng, rtol)


def _sample_k_dpp(b, c, k, rng, rtol):
    n = b.shape[0]
    lam, vecs, dense = _spectrum(b, rtol)
    r = lam.size
    m_c = n - r                                  # multiplicity of eigenvalue c
    log_mu = np.log(lam + c)
    e = log_elementary_symmetric(log_mu, k)
    js = np.arange(max(0, k - r), min(k, m_c) + 1)
    logw = e[k - js, r] + _log_comb(m_c, js) + js * np.log(c)
    w = np.exp(logw - logw.max())
    j = int(rng.choice(js, p=w / w.sum()))
    # Alg. 8 phase 1 over the r non-trivial eigenvalues, for k - j of them.
    chosen = np.asarray(choose_eigenvectors(log_mu, e, r, k - j, rng), dtype=np.int64)
    if dense:
        basis = vecs[:, chosen]
    else:
        basis = (b @ vecs[:, chosen]) / np.sqrt(lam[chosen])
    if j > 0:
        # Haar frame of the complement: project a Gaussian off span(U_r), U_r = B V Λ^(-1/2),
        # as G - B V Λ^-1 Vᵀ Bᵀ G (O(N D j), U_r is never formed).
        g = rng.standard_normal((n, j))
        for _ in range(2):                       # "twice is enough" re-projection
            g -= b @ (vecs @ ((vecs.T @ (b.T @ g)) / lam[:, None]))
        basis = np.concatenate([basis, g], axis=1)
    q, _ = np.linalg.qr(basis)
    idx = np.sort(sample_projection_dpp(q, rng))
    return idx, {"route": "dense" if dense else "dual", "rank": int(r), "n_complement": j}


def greedy_map(b: np.ndarray, c: float, k: int) -> tuple[np.ndarray, float]:
    """Greedy MAP of ``det(L_Y)``, ``|Y| = k`` (Chen, Zhang & Zhou 2018), ``L = B Bᵀ + c·I``.

    Each step adds the item with the largest conditional variance
    ``d_i² = L_ii - c_iᵀ c_i`` and updates every ``c_i`` with one row of ``L``
    computed on the fly (``B b_j``), so ``L`` is never formed. ``b`` may be float32
    (the step is a memory-bound matrix-vector product: 3x faster measured); the
    Cholesky rows and variances are accumulated in float64.

    Returns
    -------
    indices : np.ndarray [k] int64, sorted
    logdet : float
        ``log det(L_Y)`` (the sum of the selected ``log d_j²``).
    """
    n, _ = b.shape
    if not 1 <= k <= n:
        raise ParameterError(f"greedy MAP: k must be in [1, {n}], got {k}")
    with single_thread_blas():
        return _greedy_map(b, c, k)


def _greedy_map(b: np.ndarray, c: float, k: int) -> tuple[np.ndarray, float]:
    n, _ = b.shape
    d2 = np.einsum("ij,ij->i", b, b).astype(np.float64) + c
    cvec = np.empty((k, n))
    sel = np.empty(k, dtype=np.int64)
    logdet = 0.0
    j = int(np.argmax(d2))
    for t in range(k):
        sel[t] = j
        logdet += float(np.log(d2[j]))
        if t == k - 1:
            break
        row = (b @ b[j]).astype(np.float64)     # b may be float32: half the memory traffic
        row[j] += c
        e = (row - cvec[:t].T @ cvec[:t, j]) / np.sqrt(d2[j])
        cvec[t] = e
        d2 -= e * e
        d2[sel[:t + 1]] = -np.inf
        j = int(np.argmax(d2))
    return np.sort(sel), logdet
