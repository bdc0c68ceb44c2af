"""Stage 1, list: which recordings to process (fsspec glob, directory or manifest file of URIs).

Listing happens on the launcher (it compares the listing with the previous
run's manifest for ``--incremental``); the work units - shards of up to
``shard_size`` recordings (sorted by URI) plus one unit of :class:`Touch` items -
are *staged* as a Parquet file (:func:`stage_units`, one row per item, row groups
of whole units) and the :class:`ListInputs` transform reads that file inside
the pipeline (one element per row group, read by the workers through fsspec),
followed by a :class:`~apache_beam.Reshuffle` so units spread over workers. The
job graph therefore holds one URL, whatever the corpus size (Dataflow refuses
graphs over ~10-20 MB; ``beam.Create`` of 16 M recordings would be ~1.7 GB).
"""
from __future__ import annotations

import logging
import os

import apache_beam as beam
import fsspec

from pipelines.transforms.records import InputFile, Touch
from sea_core.errors import DataError, ParameterError

__all__ = ["list_inputs", "make_units", "ListInputs", "stage_units", "AUDIO_SUFFIXES",
           "MANIFEST_SUFFIXES", "UNITS_PER_ROW_GROUP"]

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
        The manifest cannot be read.
    """
    spec = str(spec or "").strip()
    if not spec:
        raise ParameterError("--input is required (a glob, a directory or a manifest of URIs)")
    fs, path = fsspec.core.url_to_fs(spec)
    if _has_magic(spec):
        found = fs.glob(path, detail=True)
        files = [InputFile(uri=_join_protocol(fs, spec, p), size=int(i.get("size") or 0),
                           version=_version(i))
                 for p, i in found.items() if i.get("type", "file") == "file"]
    elif spec.lower().endswith(MANIFEST_SUFFIXES):
        files = [_stat(u) for u in dict.fromkeys(_read_manifest(spec))]
    elif fs.isdir(path):
        found = fs.find(path, detail=True)
        files = [InputFile(uri=_join_protocol(fs, spec, p), size=int(i.get("size") or 0),
                           version=_version(i))
                 for p, i in found.items() if p.lower().endswith(AUDIO_SUFFIXES)]
    else:
        files = [_stat(spec)]
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


UNITS_PER_ROW_GROUP = 64
"""Work units per row group of the staged units file (one pipeline element reads one row group)."""


def _units_schema():
    import pyarrow as pa

    return pa.schema([("unit", pa.int64()), ("kind", pa.string()), ("uri", pa.string()),
                      ("size", pa.int64()), ("version", pa.string()), ("key", pa.list_(pa.string())),
                      ("keep_uris", pa.list_(pa.string()))])


def stage_units(units: list[list], url: str) -> int:
    """Write the work units to ``url`` (Parquet, row groups of whole units); returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sea_core import storage

    schema = _units_schema()
    groups: list[pa.Table] = []
    rows: list[dict] = []

    def flush():
        if rows:
            groups.append(pa.Table.from_pylist(rows, schema=schema))
            rows.clear()

    for i, unit in enumerate(units):
        for item in unit:
            if isinstance(item, Touch):
                rows.append({"unit": i, "kind": "touch", "uri": None, "size": None, "version": None,
                             "key": [str(k) for k in item.key], "keep_uris": sorted(item.keep_uris)})
            else:
                rows.append({"unit": i, "kind": "file", "uri": item.uri, "size": item.size,
                             "version": item.version, "key": None, "keep_uris": None})
        if (i + 1) % UNITS_PER_ROW_GROUP == 0:
            flush()
    flush()
    import io
    buf = io.BytesIO()
    with pq.ParquetWriter(buf, schema, compression="zstd") as w:
        for t in groups:
            w.write_table(t, row_group_size=max(1, t.num_rows))
    storage.publish_bytes(url, buf.getvalue())
    return sum(t.num_rows for t in groups)


def _row_groups(url: str):
    import pyarrow.parquet as pq

    from sea_core import storage

    fs, path = storage.url_to_fs(url)
    with fs.open(path, "rb") as f:
        n = pq.ParquetFile(f).num_row_groups
    for i in range(n):
        yield url, i


def _read_units(element):
    import pyarrow.parquet as pq

    from sea_core import storage

    url, i = element
    fs, path = storage.url_to_fs(url)
    with fs.open(path, "rb") as f:
        t = pq.ParquetFile(f).read_row_group(i)
    units: dict[int, list] = {}
    for r in t.to_pylist():
        if r["kind"] == "touch":
            item = Touch(key=tuple(r["key"]), keep_uris=frozenset(r["keep_uris"] or ()))
        else:
            item = InputFile(uri=r["uri"], size=int(r["size"]), version=r["version"] or "")
        units.setdefault(r["unit"], []).append(item)
    for u in sorted(units):
        yield units[u]


class ListInputs(beam.PTransform):
    """Read the staged work units (lists of :class:`InputFile` / :class:`Touch`) and reshuffle them.

    Parameters
    ----------
    units_url : str
        The file written by :func:`stage_units`; the job graph holds only this URL.
    """

    def __init__(self, units_url: str, label: str | None = None):
        super().__init__(label)
        self._url = str(units_url)

    def expand(self, pbegin):
        return (pbegin
                | "UnitsFile" >> beam.Create([self._url], reshuffle=False)
                | "RowGroups" >> beam.FlatMap(_row_groups)
                | "SpreadRowGroups" >> beam.Reshuffle()
                | "ReadUnits" >> beam.FlatMap(_read_units)
                | "Reshuffle" >> beam.Reshuffle())


def local_path(uri: str) -> str | None:
    """The local filesystem path of ``uri`` or None (for fast local renames)."""
    if "://" not in uri:
        return os.path.abspath(uri)
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None
