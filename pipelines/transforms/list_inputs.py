"""Stage 1, list: which recordings to process (fsspec glob, directory or manifest file of URIs).

Listing is part of the embed job's plan step (:mod:`pipelines.transforms.diff`,
which also joins it with the previous manifest for ``--incremental``):
:class:`ListParts` (:func:`split_spec`: one element per prefix / manifest
chunk) inside the plan job's workers, or the same functions in the launcher on
the in-process runner. The work units - shards of up to ``shard_size``
recordings (sorted by URI) plus units of :class:`Touch` items - are *staged* as
Parquet shards (:func:`stage_units`, one row per item, row groups of whole
units) and the :class:`ListInputs` transform reads them inside the embed
pipeline (one element per row group, read by the workers through fsspec),
followed by a :class:`~apache_beam.Reshuffle` so units spread over workers. The
job graph therefore holds one URL, whatever the corpus size (Dataflow refuses
graphs over ~10-20 MB; ``beam.Create`` of 16 M recordings would be ~1.7 GB).
"""
from __future__ import annotations

import logging
import os

import apache_beam as beam
import fsspec

from pipelines.transforms.records import DIRECTORY_VERSION, InputFile, Touch
from sea_core import storage
from sea_core.datasets.layout import AUDIO_SUFFIXES
from sea_core.errors import DataError, ParameterError

__all__ = ["list_inputs", "ListParts", "split_spec", "check_input_exists", "ListInputs",
           "stage_units", "MANIFEST_SUFFIXES", "UNITS_PER_ROW_GROUP", "DIRECTORY_VERSION"]

log = logging.getLogger(__name__)

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
        fs, path = storage.url_to_fs(uri)
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


def _list_core(spec: str) -> list[InputFile]:
    """Everything ``spec`` names (unsorted, possibly empty); see :func:`list_inputs`."""
    fs, path = storage.url_to_fs(spec)
    if _has_magic(spec):
        return _entries(fs, spec, fs.glob(path, detail=True))
    if spec.lower().endswith(MANIFEST_SUFFIXES):
        return [_stat(u) for u in dict.fromkeys(_read_manifest(spec))]
    if fs.isdir(path):
        found = fs.find(path, detail=True, withdirs=True)
        return [f for f in _entries(fs, spec, found) if f.uri.lower().endswith(AUDIO_SUFFIXES)]
    if fs.exists(path) or (hasattr(fs, "islink") and fs.islink(path)):
        return [_stat(spec)]
    return []


def check_input_exists(spec: str) -> None:
    """DataError "input not found: <spec>" for a plain path (no glob) that does not exist."""
    spec = str(spec or "").strip()
    if not spec:
        raise ParameterError("--input is required (a glob, a directory or a manifest of URIs)")
    if _has_magic(spec):
        return
    fs, path = storage.url_to_fs(spec)
    if not (fs.exists(path) or (hasattr(fs, "islink") and fs.islink(path))):
        raise DataError(f"input not found: {spec}")


def _finish_listing(spec: str, files) -> list[InputFile]:
    unique = {f.uri: f for f in files}
    if not unique:
        raise DataError(f"no input matches {spec} (nothing was written or removed)")
    out = [unique[u] for u in sorted(unique)]
    log.info("list: %d input(s) from %s", len(out), spec)
    return out


def list_inputs(spec: str) -> list[InputFile]:
    """List the recordings named by ``spec`` in this process, sorted by URI, without duplicates.

    (:class:`ListParts` does the same listing inside a Beam pipeline, one element per prefix;
    the embed job's plan step uses that one, see :mod:`pipelines.transforms.diff`.)

    Parameters
    ----------
    spec : str
        A glob (``data/upstream/**/*.flac``, ``gs://b/up/*/*/*.flac``), a
        directory (every audio file below it), a manifest file (``.txt`` /
        ``.lst`` / ``.list`` / ``.manifest``: one URI per line, ``#`` comments;
        ``.parquet``: a ``uri`` column), or a single audio file. Symlinked files
        are followed; a directory named like a recording is listed as a dead letter.

    Returns
    -------
    list of InputFile
        With size and version (ETag / mtime) from ``fs.info`` for change detection.

    Raises
    ------
    ParameterError
        ``spec`` is empty.
    DataError
        The manifest cannot be read, ``spec`` does not exist ("input not found: ...")
        or nothing matches ("no input matches ...").
    """
    check_input_exists(spec)
    spec = str(spec).strip()
    return _finish_listing(spec, _list_core(spec))


# --------------------------------------------------------------------------- listing in Beam
MANIFEST_CHUNK = 1000
"""URIs of a manifest statted per pipeline element."""


def split_spec(spec: str):
    """Sub-listings of ``spec``, each listed by one pipeline element (runs inside the pipeline).

    A glob is split at its first wildcard component (``up/*/*/*.flac`` -> one
    pattern per ``up/<sensor>`` prefix), a directory into its sub-directories
    (+ its own audio files), a manifest into chunks of :data:`MANIFEST_CHUNK` URIs.
    Yields ``(kind, payload)`` with kind 'spec' (list with :func:`_list_core`),
    'files' (InputFiles already known) or 'uris' (URIs to stat).
    """
    fs, path = storage.url_to_fs(spec)
    if _has_magic(spec):
        comps = path.split("/")
        i = next(j for j, c in enumerate(comps) if _has_magic(c))
        if comps[i] == "**" or "**" in comps[i] or i == len(comps) - 1:
            yield "spec", spec
            return
        head = "/".join(comps[:i + 1])
        rest = "/".join(comps[i + 1:])
        found = fs.glob(head, detail=True)
        for p, info in sorted(found.items()):
            if info.get("type") == "directory" or (info.get("type") == "other" and info.get("islink")
                                                   and fs.isdir(p)):
                yield "spec", _join_protocol(fs, spec, f"{p.rstrip('/')}/{rest}")
        return
    if spec.lower().endswith(MANIFEST_SUFFIXES):
        chunk = []
        for u in dict.fromkeys(_read_manifest(spec)):
            chunk.append(u)
            if len(chunk) == MANIFEST_CHUNK:
                yield "uris", chunk
                chunk = []
        if chunk:
            yield "uris", chunk
        return
    if fs.isdir(path):
        own = []
        children = {i["name"]: i for i in fs.ls(path, detail=True)}
        for p, info in sorted(children.items()):
            is_dir = info.get("type") == "directory" or (info.get("type") == "other"
                                                         and info.get("islink") and fs.isdir(p))
            if is_dir:
                if p.rstrip("/").lower().endswith(AUDIO_SUFFIXES):
                    own += _entries(fs, spec, {p: {**info, "type": "directory"}})
                yield "spec", _join_protocol(fs, spec, p)
            elif p.lower().endswith(AUDIO_SUFFIXES):
                own += _entries(fs, spec, {p: info})
        if own:
            yield "files", own
        return
    yield "spec", spec


def _list_part(element):
    kind, payload = element
    if kind == "files":
        yield from payload
    elif kind == "uris":
        for u in payload:
            yield _stat(u)
    else:
        yield from _list_core(payload)


class ListParts(beam.PTransform):
    """``spec`` -> its InputFiles (unsorted, possibly repeated), listed by the workers: one
    element per glob prefix / sub-directory / manifest chunk (:func:`split_spec`)."""

    def __init__(self, spec: str, label: str | None = None):
        super().__init__(label)
        self.spec = str(spec)

    def expand(self, pbegin):
        return (pbegin
                | "Spec" >> beam.Create([self.spec], reshuffle=False)
                | "SplitSpec" >> beam.FlatMap(split_spec)
                | "SpreadPrefixes" >> beam.Reshuffle()
                | "ListPrefix" >> beam.FlatMap(_list_part))


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
    files = sorted(storage.glob(f"{url.rstrip('/')}/part-*.parquet")) if storage.isdir(url) \
        else [url]
    yield from storage.parquet_row_groups(files)


def _read_units(element):
    t = storage.read_row_group(*element)
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
        A file written by :func:`stage_units`, or a directory of such ``part-*.parquet``
        shards (written by the plan job's workers); the job graph holds only this URL.
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
