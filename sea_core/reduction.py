"""StandardScaler + PCA reduction of teacher embeddings: the student targets [ref (d)].

:func:`fit_reduction` fits a ``StandardScaler`` then ONE PCA (sklearn, no
whitening) with ``max(dims)`` components; every smaller dim is a truncation.
PCA components are nested (component i is the i-th eigenvector of the scaled
covariance whatever the number kept), so the d-dim target of a window equals the
first d coordinates of its ``max(dims)``-dim target and a single fit serves all
students (the authors fitted one PCA per dim; the results are the same up to the
solver's numerical precision and sign convention).

When ``N * D * 8`` bytes exceeds ``ReductionParams.memory_limit_bytes``, or when
the embeddings come as batches, the fit streams: ``StandardScaler.partial_fit``
over every batch, then ``IncrementalPCA.partial_fit`` over the scaled batches
(re-chunked to at least ``max(dims)`` rows each).

At corpus scale the fit is distributed (``pipelines/fit_pca.py``): workers
reduce their rows to :class:`Moments` (float64 count, mean and centred sum of
outer products, merged pairwise with Chan's update), and :func:`fit_from_moments`
derives the scaler and the PCA from the covariance with ``eigh`` in O(D^2)
memory, equal to sklearn's ``StandardScaler`` + ``PCA`` on the same rows.

The artifact (:class:`ReductionArtifact`) is a directory with ``reduction.npz``
(mean, scale, components, explained_variance, explained_variance_ratio) and
``reduction.json`` (version, dims, sampling method, teacher id, n_fit, input
fingerprint, solver, created-by, npz sha256), at any fsspec URL. Each file is
published by ``sea_core.storage`` (temp key, then move); the JSON goes last and
records the npz hash, so a torn write is detected on load.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sea_core import storage
from sea_core.errors import DataError, ParameterError, SchemaError
from sea_core.params import REDUCTION, ReductionParams

__all__ = ["ReductionArtifact", "fit_reduction", "fingerprint_array", "Moments", "fit_from_moments"]

_ARRAYS = ("mean", "scale", "components", "explained_variance", "explained_variance_ratio")


def fingerprint_array(emb: np.ndarray) -> str:
    """``'sha256:<hex>'`` of an array's shape, dtype and bytes (a default input fingerprint)."""
    a = np.ascontiguousarray(emb)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.data)
    return "sha256:" + h.hexdigest()


@dataclass
class ReductionArtifact:
    """A fitted scaler + PCA.

    Attributes
    ----------
    mean, scale : np.ndarray [D] float64
        StandardScaler statistics (``scale`` is 1 for constant features, as sklearn).
    components : np.ndarray [n_components, D] float64
        PCA axes, rows ordered by explained variance.
    explained_variance, explained_variance_ratio : np.ndarray [n_components]
    dims : tuple of int
        Target dims offered (each <= n_components).
    sampling_method, teacher_id, fingerprint : str
        Provenance: how the fitting set was chosen, which teacher, which input.
    n_fit : int
        Windows the reduction was fitted on.
    solver : str
        'pca' or 'incremental'.
    version : str
    created_by : str
    created_at : str
        UTC ISO-8601 time of the fit.
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    dims: tuple
    sampling_method: str
    teacher_id: str
    fingerprint: str
    n_fit: int
    solver: str
    version: str = REDUCTION.version
    created_by: str = ""
    created_at: str = ""

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def input_dim(self) -> int:
        return int(self.components.shape[1])

    # ----------------------------------------------------------------- transform
    def transform(self, emb: np.ndarray, dim: int) -> np.ndarray:
        """Zero-mean PCA scores of ``emb`` truncated to ``dim``.

        Parameters
        ----------
        emb : np.ndarray [N, D]
        dim : int
            ``1 <= dim <= n_components``.

        Returns
        -------
        np.ndarray [N, dim] float32

        Raises
        ------
        ParameterError
            ``dim`` out of range or ``emb`` of the wrong shape.
        DataError
            Non-finite values in ``emb``.
        """
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= self.n_components:
            raise ParameterError(f"dim must be an integer in [1, {self.n_components}] "
                                 f"(n_components of this artifact), got {dim!r}")
        x = np.asarray(emb)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ParameterError(f"embeddings: expected shape [N, {self.input_dim}], got {x.shape}")
        if not np.isfinite(x).all():
            raise DataError(f"embeddings: {int((~np.isfinite(x).all(axis=1)).sum())} row(s) hold NaN/inf")
        z = (x.astype(np.float64) - self.mean) / self.scale
        return (z @ self.components[:dim].T).astype(np.float32)

    def explained_variance_on(self, embeddings: np.ndarray, *, dim: int | None = None,
                              chunk_rows: int = 16_384) -> float:
        """Fraction of the variance of ``embeddings`` that the first ``dim`` axes keep (an R²).

        In the space the PCA was fitted in (standardised with this artifact's scaler)::

            z_i = (x_i - mean) / scale
            EV  = 1 - sum_i ||z_i - C_d^T C_d z_i||^2 / sum_i ||z_i - z_bar||^2

        with ``C_d`` the first ``dim`` components (default: all) and ``z_bar`` the mean of
        ``z`` over ``embeddings`` (N >= 2 rows): the R² of reconstructing the rows through
        the artifact against predicting their own mean. On the fitting data it equals
        ``explained_variance_ratio[:dim].sum()``; a shift of the mean out of the kept axes
        counts as unexplained, one within them changes nothing. At most 1, negative when
        worse than the rows' mean, NaN when the rows have no variance. Accumulated in
        float64 chunk by chunk (no float64 copy of ``embeddings``).

        Raises
        ------
        ParameterError
            ``dim`` out of range, ``embeddings`` of the wrong shape or with fewer than 2 rows.
        DataError
            Non-finite values in ``embeddings``.
        """
        dim = self.n_components if dim is None else dim
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= self.n_components:
            raise ParameterError(f"dim must be an integer in [1, {self.n_components}] "
                                 f"(n_components of this artifact), got {dim!r}")
        x = np.asarray(embeddings)  # no copy of an array (float32 stays float32)
        if x.ndim != 2 or x.shape[1] != self.input_dim or x.shape[0] < 2:
            raise ParameterError(f"embeddings: expected shape [N >= 2, {self.input_dim}], got {x.shape}")
        c = self.components[:dim]
        n = x.shape[0]
        z_sum = np.zeros(self.input_dim)
        for i in range(0, n, chunk_rows):
            chunk = np.asarray(x[i:i + chunk_rows], dtype=np.float64)
            if not np.isfinite(chunk).all():
                bad = int(np.flatnonzero(~np.isfinite(chunk).all(axis=1))[0]) + i
                raise DataError(f"embeddings: NaN/inf in row {bad}")
            z_sum += ((chunk - self.mean) / self.scale).sum(axis=0)
        z_bar = z_sum / n
        residual, total = 0.0, 0.0
        for i in range(0, n, chunk_rows):
            z = (np.asarray(x[i:i + chunk_rows], dtype=np.float64) - self.mean) / self.scale
            r = z - (z @ c.T) @ c
            residual += float(np.einsum("ij,ij->", r, r))
            zc = z - z_bar
            total += float(np.einsum("ij,ij->", zc, zc))
        energy = total + n * float(z_bar @ z_bar)   # sum ||z||^2: round-off of an all-equal set is ~1e-16 of it
        return float(1.0 - residual / total) if total > 1e-12 * energy else float("nan")

    # ----------------------------------------------------------------- persistence
    def metadata(self) -> dict:
        return {"version": self.version, "dims": list(self.dims), "n_components": self.n_components,
                "input_dim": self.input_dim, "sampling_method": self.sampling_method,
                "teacher_id": self.teacher_id, "n_fit": self.n_fit, "fingerprint": self.fingerprint,
                "solver": self.solver, "created_by": self.created_by, "created_at": self.created_at,
                "whiten": False,
                "explained_variance_ratio_at_dims": {
                    str(d): float(self.explained_variance_ratio[:d].sum()) for d in self.dims}}

    def save(self, directory: str | os.PathLike, *, params: ReductionParams = REDUCTION):
        """Write ``reduction.npz`` then ``reduction.json`` into ``directory`` (atomic per file).

        Returns
        -------
        The directory: a Path for a local path, the URL string otherwise.
        """
        out = str(directory)
        buf = io.BytesIO()
        np.savez(buf, **{name: getattr(self, name) for name in _ARRAYS})
        payload = buf.getvalue()
        meta = self.metadata()
        meta["npz_sha256"] = hashlib.sha256(payload).hexdigest()
        storage.publish_bytes(storage.join(out, params.npz_name), payload)
        storage.publish_bytes(storage.join(out, params.json_name), (json.dumps(meta, indent=2) + "\n").encode())
        return out if storage.is_url(out) else Path(out)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, params: ReductionParams = REDUCTION) -> "ReductionArtifact":
        """Read an artifact written by :meth:`save`.

        Raises
        ------
        DataError
            A file is missing, unreadable or inconsistent (names the file).
        SchemaError
            The artifact version is not ``ReductionParams.version``.
        """
        d = str(directory)
        jpath, npath = storage.join(d, params.json_name), storage.join(d, params.npz_name)
        jname = params.json_name
        if not storage.isfile(jpath):
            raise DataError(f"{jpath}: missing (not a reduction artifact, or an unfinished write)")
        try:
            meta = storage.read_json(jpath)
        except (OSError, ValueError) as exc:
            raise DataError(f"{jpath}: unreadable JSON ({exc})") from None
        if meta.get("version") != params.version:
            raise SchemaError(f"{jpath}: reduction artifact version {meta.get('version')!r} is not "
                              f"supported (this sea reads version {params.version!r}); refit it")
        if not storage.isfile(npath):
            raise DataError(f"{npath}: missing")
        payload = storage.read_bytes(npath)
        if hashlib.sha256(payload).hexdigest() != meta.get("npz_sha256"):
            raise DataError(f"{npath}: content does not match the sha256 recorded in {jname}")
        with np.load(io.BytesIO(payload)) as z:
            missing = [n for n in _ARRAYS if n not in z.files]
            if missing:
                raise DataError(f"{npath}: missing array(s) {', '.join(missing)}")
            arrays = {n: z[n] for n in _ARRAYS}
        for key in ("dims", "sampling_method", "teacher_id", "fingerprint", "n_fit", "solver"):
            if key not in meta:
                raise DataError(f"{jpath}: missing field {key!r}")
        return cls(**arrays, dims=tuple(int(x) for x in meta["dims"]),
                   sampling_method=meta["sampling_method"], teacher_id=meta["teacher_id"],
                   fingerprint=meta["fingerprint"], n_fit=int(meta["n_fit"]), solver=meta["solver"],
                   version=meta["version"], created_by=meta.get("created_by", ""),
                   created_at=meta.get("created_at", ""))


def _created_by() -> str:
    import sklearn

    from sea_core import __version__
    return f"sea {__version__} (scikit-learn {sklearn.__version__}, numpy {np.__version__})"


def _check_batch(x, where: str, width: int | None) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or (width is not None and x.shape[1] != width):
        raise ParameterError(f"{where}: expected a 2-D array [N, {width or 'D'}], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ParameterError(f"{where}: expected numbers, got dtype {x.dtype}")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(f"{where}: {int(bad.sum())} row(s) hold NaN/inf (first: row {int(np.flatnonzero(bad)[0])})")
    return x


def _rebatch(batches: Iterable[np.ndarray], rows: int, width_ref: list):
    """Yield (index, array) blocks of >= ``rows`` rows (the last one merged if short)."""
    buf, count, pending = [], 0, None
    for i, b in enumerate(batches):
        b = _check_batch(b, f"embeddings batch {i}", width_ref[0])
        width_ref[0] = b.shape[1]
        buf.append(b)
        count += b.shape[0]
        if count >= rows:
            if pending is not None:
                yield pending
            pending, buf, count = np.concatenate(buf), [], 0
    if buf:
        tail = np.concatenate(buf)
        pending = tail if pending is None else np.concatenate([pending, tail])
    if pending is not None:
        yield pending


def fit_reduction(embeddings: np.ndarray | Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]], *,
                  dims: int | tuple[int, ...] = REDUCTION.dims, sampling_method: str, teacher_id: str,
                  fingerprint: str | None = None, batch_size: int | None = None,
                  params: ReductionParams = REDUCTION) -> ReductionArtifact:
    """Fit StandardScaler + PCA (``max(dims)`` components, no whitening).

    Parameters
    ----------
    embeddings : np.ndarray [N, D], a re-iterable of [n_i, D] batches, or a callable returning one
        The sampled teacher embeddings. Batches are read twice (scaler pass, PCA
        pass): pass a list or a callable, not a one-shot generator.
    dims : int or tuple of int
        Target dims; one PCA with ``max(dims)`` components is fitted.
    sampling_method : str
        How the fitting set was selected (recorded).
    teacher_id : str
        Teacher that produced the embeddings (recorded).
    fingerprint : str, optional
        Input data fingerprint (e.g. the hash of the selection); for an array
        input it defaults to :func:`fingerprint_array`.
    batch_size : int, optional
        Rows per IncrementalPCA batch (default ``ReductionParams.batch_rows``,
        raised to ``max(dims)`` when smaller).
    params : ReductionParams

    Returns
    -------
    ReductionArtifact

    Raises
    ------
    ParameterError
        Bad dims (<= 0, > D), a one-shot iterator, missing provenance.
    DataError
        NaN/inf input, too few samples (``N < max(dims)``), no data.
    """
    from sklearn.decomposition import PCA, IncrementalPCA
    from sklearn.preprocessing import StandardScaler

    dims_t = (int(dims),) if isinstance(dims, (int, np.integer)) else tuple(int(d) for d in dims)
    if not dims_t or any(d <= 0 for d in dims_t):
        raise ParameterError(f"dims must be positive integers, got {dims!r}")
    dims_t = tuple(sorted(set(dims_t), reverse=True))
    n_comp = dims_t[0]
    if not sampling_method or not teacher_id:
        raise ParameterError("sampling_method and teacher_id are required (they are recorded in the artifact)")
    if batch_size is not None and batch_size <= 0:
        raise ParameterError(f"batch_size must be > 0, got {batch_size}")

    if isinstance(embeddings, np.ndarray):
        x = _check_batch(embeddings, "embeddings", None)
        n, d = x.shape
        fingerprint = fingerprint or fingerprint_array(x)
        _check_sizes(n, d, n_comp)
        rows = max(batch_size or params.batch_rows, n_comp)
        if n * d * 8 <= params.memory_limit_bytes:
            scaler = StandardScaler().fit(x)
            solver = "covariance_eigh" if n >= 10 * d else "full"
            pca = PCA(n_components=n_comp, whiten=False, svd_solver=solver).fit(scaler.transform(x))
            return _artifact(scaler, pca, dims_t, sampling_method, teacher_id, fingerprint, n, "pca")
        def source(x=x, n_rows=n, rows=rows):  # noqa: E306  (row blocks of the in-memory array)
            return (x[i:i + rows] for i in range(0, n_rows, rows))
    else:
        if callable(embeddings):
            source = embeddings
        elif iter(embeddings) is embeddings:
            raise ParameterError("embeddings: a one-shot iterator cannot be read twice (scaler, then PCA); "
                                 "pass a list of batches or a callable returning a fresh iterator")
        else:
            def source():  # noqa: E306
                return iter(embeddings)
        if not fingerprint:
            raise ParameterError("fingerprint is required when embeddings come as batches")
        rows = max(batch_size or params.batch_rows, n_comp)

    width = [None]
    scaler = StandardScaler()
    n = 0
    for block in _rebatch(source(), 1, width):
        scaler.partial_fit(block)
        n += block.shape[0]
    if n == 0:
        raise DataError("embeddings: no rows")
    _check_sizes(n, width[0], n_comp)
    ipca = IncrementalPCA(n_components=n_comp, whiten=False)
    for block in _rebatch(source(), rows, width):
        ipca.partial_fit(scaler.transform(block))
    return _artifact(scaler, ipca, dims_t, sampling_method, teacher_id, fingerprint, n, "incremental")


def _check_sizes(n: int, d: int, n_comp: int) -> None:
    if n_comp > d:
        raise ParameterError(f"dims: max(dims)={n_comp} exceeds the embedding dimension D={d}")
    if n < n_comp:
        raise DataError(f"embeddings: too few samples ({n}) for {n_comp} PCA components (need N >= max(dims))")


def _artifact(scaler, pca, dims, sampling_method, teacher_id, fingerprint, n, solver) -> ReductionArtifact:
    return ReductionArtifact(
        mean=np.asarray(scaler.mean_, np.float64), scale=np.asarray(scaler.scale_, np.float64),
        components=np.asarray(pca.components_, np.float64),
        explained_variance=np.asarray(pca.explained_variance_, np.float64),
        explained_variance_ratio=np.asarray(pca.explained_variance_ratio_, np.float64),
        dims=dims, sampling_method=str(sampling_method), teacher_id=str(teacher_id),
        fingerprint=str(fingerprint), n_fit=int(n), solver=solver, created_by=_created_by(),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


# --------------------------------------------------------------------------- distributed fit
class Moments:
    """Float64 sufficient statistics of a set of rows: count, mean, centred sum of outer products.

    ``M2 = sum_i (x_i - mean)(x_i - mean)^T``, i.e. the sum of outer products
    minus ``n mean mean^T``, kept centred so that merging (Chan et al.'s pairwise
    update) does not lose precision to cancellation. Memory O(D^2): 2 MB at D=512.
    """

    __slots__ = ("n", "mean", "m2")

    def __init__(self, n: int = 0, mean: np.ndarray | None = None, m2: np.ndarray | None = None):
        self.n, self.mean, self.m2 = int(n), mean, m2

    @classmethod
    def of(cls, x: np.ndarray, chunk_rows: int = 16384) -> "Moments":
        """Moments of the rows of ``x`` [N, D] (float64 arithmetic, chunk by chunk)."""
        out = cls()
        for i in range(0, len(x), chunk_rows):
            c = np.asarray(x[i:i + chunk_rows], np.float64)
            if not len(c):
                continue
            mean = c.mean(axis=0)
            z = c - mean
            out.merge(cls(len(c), mean, z.T @ z))
        return out

    def merge(self, other: "Moments") -> "Moments":
        """Merge ``other`` into self (in place); returns self."""
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mean, self.m2 = other.n, other.mean.copy(), other.m2.copy()
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        self.mean = self.mean + delta * (other.n / n)
        self.n = n
        return self

    def __reduce__(self):
        return (Moments, (self.n, self.mean, self.m2))


def fit_from_moments(moments: Moments, *, dims, sampling_method: str, teacher_id: str,
                     fingerprint: str) -> ReductionArtifact:
    """StandardScaler + PCA (``max(dims)`` components) from :class:`Moments`, in O(D^2) memory.

    Scaler: ``mean``, ``scale = sqrt(M2_ii / n)`` (1 for constant features, as
    sklearn). PCA: ``eigh`` of the scaled covariance ``M2 / (n - 1) / (s s^T)``,
    components sign-fixed like sklearn's ``svd_flip`` (largest |loading| positive),
    explained variance ratio over the full spectrum. Equal to sklearn's
    ``StandardScaler().fit(x)`` + ``PCA(n).fit(scaled x)`` to numerical precision.
    """
    dims_t = (int(dims),) if isinstance(dims, (int, np.integer)) else tuple(int(d) for d in dims)
    if not dims_t or any(d <= 0 for d in dims_t):
        raise ParameterError(f"dims must be positive integers, got {dims!r}")
    dims_t = tuple(sorted(set(dims_t), reverse=True))
    n_comp = dims_t[0]
    if moments.n == 0:
        raise DataError("embeddings: no rows")
    d = moments.mean.shape[0]
    _check_sizes(moments.n, d, n_comp)
    if moments.n < 2:
        raise DataError("embeddings: need at least 2 rows for a covariance")
    if not (np.isfinite(moments.mean).all() and np.isfinite(moments.m2).all()):
        raise DataError("embeddings: NaN/inf in the input rows")
    n = moments.n
    var = np.clip(np.diag(moments.m2) / n, 0.0, None)
    scale = np.sqrt(var)
    # sklearn: features with (near-)zero variance keep scale 1
    eps = np.finfo(np.float64).eps
    upper = var <= (n * eps * var + (n * moments.mean * eps) ** 2)  # sklearn _is_constant_feature
    scale[upper | (scale < 10 * eps)] = 1.0
    cov = moments.m2 / (n - 1) / np.outer(scale, scale)
    cov = (cov + cov.T) / 2
    eigvals, eigvecs = np.linalg.eigh(cov)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    eigvals = np.where(eigvals < 0, 0.0, eigvals)
    total = float(eigvals.sum())
    comps = eigvecs.T[:n_comp].copy()
    signs = np.sign(comps[np.arange(n_comp), np.argmax(np.abs(comps), axis=1)])
    signs[signs == 0] = 1.0
    comps *= signs[:, None]
    ev = eigvals[:n_comp].copy()
    ratio = ev / total if total > 0 else np.zeros_like(ev)
    return ReductionArtifact(
        mean=np.asarray(moments.mean, np.float64), scale=scale, components=comps,
        explained_variance=ev, explained_variance_ratio=ratio, dims=dims_t,
        sampling_method=str(sampling_method), teacher_id=str(teacher_id), fingerprint=str(fingerprint),
        n_fit=int(n), solver="covariance", created_by=_created_by(),
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
