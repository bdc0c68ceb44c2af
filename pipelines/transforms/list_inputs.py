"""Stage 1, list: which recordings to process (fsspec glob, directory or manifest file of URIs).

Listing happens when the pipeline is *built* (the driver must compare the
listing with the previous run's manifest for ``--incremental``); the
:class:`ListInputs` transform then creates the work units: shards of up to
``shard_size`` recordings (sorted by URI) plus one unit of :class:`Touch`
items, followed by a :class:`~apache_beam.Reshuffle` so units spread over workers.
"""
from __future__ import annotations

import logging
import os

import apache_beam as beam
import fsspec

from pipelines.transforms.records import DIRECTORY_VERSION, InputFile, Touch
from sea_core.errors import DataError, ParameterError

__all__ = ["list_inputs", "make_units", "ListInputs", "AUDIO_SUFFIXES", "MANIFEST_SUFFIXES",
           "DIRECTORY_VERSION"]

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".aif", ".aiff", ".opus")
"""Files picked up when ``--input`` is a directory."""
MANIFEST_SUFFIXES = (".txt", ".lst", ".list", ".manifest", ".parquet")
"""``--input`` with one of these suffixes is a manifest: one URI per line (or a Parquet ``uri`` column)."""
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "md5", "generation", "LastModified", "updated", "mtime",
                 "last_modified", "created")


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _version(info: dict) -> str:
    for k in _VERSION_KEYS:
        v = info.get(k)
        if v not in (None, ""):
            return f"{k}:{v}"
    return ""


def _join_protocol(fs, pattern: str, path: str) -> str:
    """Re-attach the URL protocol that ``fs.glob`` strips (plain local paths stay plain)."""
    if "://" in pattern and not pattern.startswith("file://"):
        return fs.unstrip_protocol(path)
    return path


def _is_file_entry(info: dict) -> bool:
    """A regular file, or a symlink (fsspec type 'other') that a directory listing would include."""
    kind = info.get("type", "file")
    return kind == "file" or (kind == "other" and bool(info.get("islink")))


def _entries(fs, spec: str, found: dict) -> list[InputFile]:
    """Files (symlinks followed) and directories named like audio (-> dead letters) of a listing."""
    out = []
    for p, i in found.items():
        uri = _join_protocol(fs, spec, p)
        if _is_file_entry(i):
            out.append(InputFile(uri=uri, size=int(i.get("size") or 0), version=_version(i)))
        elif i.get("type") == "directory" and p.rstrip("/").lower().endswith(AUDIO_SUFFIXES):
            out.append(InputFile(uri=uri, size=0, version=DIRECTORY_VERSION))
    return out


def _stat(uri: str) -> InputFile:
    try:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
    except (FileNotFoundError, OSError, ValueError, ImportError):
        return InputFile(uri=uri)  # the decode stage will dead-letter it with the real reason
    return InputFile(uri=uri, size=int(info.get("size") or 0), version=_version(info))


def _read_manifest(uri: str) -> list[str]:
    try:
        if uri.lower().endswith(".parquet"):
            import pyarrow.parquet as pq
            with fsspec.open(uri, "rb") as f:
                table = pq.read_table(f, columns=["uri"])
            return [str(u) for u in table.column("uri").to_pylist() if u]
        with fsspec.open(uri, "rt", encoding="utf-8") as f:
            lines = [ln.strip() for ln in f]
    except FileNotFoundError as exc:
        raise DataError(f"{uri}: input manifest not found") from exc
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{uri}: cannot read the input manifest ({exc})") from exc
    return [ln for ln in lines if ln and not ln.startswith("#")]


def list_inputs(spec: str) -> list[InputFile]:
    """List the recordings named by ``spec``, sorted by URI, without duplicates.

    Parameters
    ----------
    spec : str
        A glob (``data/upstream/**/*.flac``, ``gs://b/up/*/*/*.flac``), a
        directory (every audio file below it), a manifest file (``.txt`` /
        ``.lst`` / ``.list`` / ``.manifest``: one URI per line, ``#`` comments;
        ``.parquet``: a ``uri`` column), or a single audio file.

    Returns
    -------
    list of InputFile
        With size and version (ETag / mtime) from ``fs.info`` for change detection.

    Raises
    ------
    ParameterError
        ``spec`` is empty.
    DataError
        The manifest cannot be read, ``spec`` names a path that does not exist
        ("input not found: ..."), or nothing matches ("no input matches ...").
    """
    spec = str(spec or "").strip()
    if not spec:
        raise ParameterError("--input is required (a glob, a directory or a manifest of URIs)")
    fs, path = fsspec.core.url_to_fs(spec)
    if _has_magic(spec):
        files = _entries(fs, spec, fs.glob(path, detail=True))
    elif spec.lower().endswith(MANIFEST_SUFFIXES):
        files = [_stat(u) for u in dict.fromkeys(_read_manifest(spec))]
    elif fs.isdir(path):
        found = fs.find(path, detail=True, withdirs=True)
        files = [f for f in _entries(fs, spec, found) if f.uri.lower().endswith(AUDIO_SUFFIXES)]
    elif fs.exists(path) or (hasattr(fs, "islink") and fs.islink(path)):
        files = [_stat(spec)]
    else:
        raise DataError(f"input not found: {spec}")
    if not files:
        raise DataError(f"no input matches {spec} (nothing was written or removed)")
    unique = {f.uri: f for f in files}
    out = [unique[u] for u in sorted(unique)]
    log.info("list: %d input(s) from %s", len(out), spec)
    return out


def make_units(files: list[InputFile], touches: list[Touch], shard_size: int) -> list[list]:
    """Work units: shards of ``shard_size`` files in URI order, then one unit of touches."""
    if shard_size < 1:
        raise ParameterError(f"shard_size must be >= 1, got {shard_size!r}")
    units: list[list] = [list(files[i:i + shard_size]) for i in range(0, len(files), shard_size)]
    if touches:
        units.append(sorted(touches, key=lambda t: t.key))
    return units


class ListInputs(beam.PTransform):
    """Create the work units (lists of :class:`InputFile` / :class:`Touch`) and reshuffle them.

    Parameters
    ----------
    units : list of list
        From :func:`make_units` (the listing is done when the pipeline is built).
    """

    def __init__(self, units: list[list], label: str | None = None):
        super().__init__(label)
        self._units = [list(u) for u in units]

    def expand(self, pbegin):
        return (pbegin
                | "CreateUnits" >> beam.Create(self._units, reshuffle=False)
                | "Reshuffle" >> beam.Reshuffle())


def local_path(uri: str) -> str | None:
    """The local filesystem path of ``uri`` or None (for fast local renames)."""
    if "://" not in uri:
        return os.path.abspath(uri)
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None
