"""The processed-recordings manifest (``DIR/manifest.parquet``) and the incremental plan.

One row per recording of the output: ``uri``, ``size``, ``version`` (ETag or
mtime from ``fs.info``), ``content_hash`` (sha256 of the bytes, = frames
``recording_id``; null for dead letters), ``run_id`` (run that last processed
it), ``status`` ('ok' | 'dead'), ``sensor`` / ``day`` (its frames partition)
and ``windows``. Key-value metadata records the teacher id and framing so an
``--incremental`` run with other settings is refused.

The manifest is written *last* (before ``_SUCCESS``), atomically: a run
interrupted earlier leaves the previous manifest, and the restarted run
recomputes the same plan, rebuilding the same partitions from the same kept
rows - ending with the same bytes as an uninterrupted run.

Since issue 15 the manifest is a *directory* of shards written by the workers,
``manifest.parquet/manifest-<b>-of-<B>.parquet``: row ``uri`` goes to shard
``crc32(uri) % B`` and each shard is sorted by URI, so the same rows give the
same bytes. A manifest missing any of its ``B`` shards (a publish that was cut
short) counts as absent: the next run rebuilds everything rather than trust
it. A single-file ``manifest.parquet`` (written before) is still read.
:class:`ReadManifest` reads either inside a pipeline, one element per row
group. :func:`plan_run` is an independent, launcher-side reference of the plan
that :mod:`pipelines.transforms.diff` computes (the oracle of
tests/test_incremental_beam.py and the old-plan baseline of
benchmarks/incremental_plan.py; the embed job does not use it).
"""
from __future__ import annotations

import json
import logging
import re
import zlib
from dataclasses import dataclass, field

import apache_beam as beam
import pyarrow as pa

from pipelines.transforms.records import (DEAD_LETTER_KEY, InputFile, Touch, frames_key,
                                          parse_recording_path)
from sea_core.errors import AudioError, ParameterError, SchemaError
from sea_core.params import RELEVANCE, RelevanceParams

__all__ = ["MANIFEST_SCHEMA_VERSION", "manifest_schema", "ManifestRow", "read_manifest",
           "write_manifest", "Plan", "plan_run", "manifest_files", "manifest_footer",
           "manifest_table", "shard_of", "shard_name", "ReadManifest", "publish_manifest",
           "MANIFEST_SHARD_ROWS"]

log = logging.getLogger(__name__)

MANIFEST_SCHEMA_VERSION = "1"
MANIFEST_SHARD_ROWS = 200_000
"""Rows per manifest shard (about 20 MB in a worker while the shard is written)."""
_SHARD = re.compile(r"manifest-(\d{5})-of-(\d{5})\.parquet$")


def manifest_schema(settings: dict | None = None) -> pa.Schema:
    meta = {b"sea.schema": b"embed_manifest", b"sea.schema_version": MANIFEST_SCHEMA_VERSION.encode()}
    if settings is not None:
        meta[b"sea.settings"] = json.dumps(settings, sort_keys=True).encode()
    return pa.schema([
        pa.field("uri", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("content_hash", pa.string()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("sensor", pa.string()),
        pa.field("day", pa.string()),
        pa.field("windows", pa.int32(), nullable=False),
    ], metadata=meta)


@dataclass(frozen=True)
class ManifestRow:
    uri: str
    size: int
    version: str
    content_hash: str | None
    run_id: str
    status: str
    sensor: str | None
    day: str | None
    windows: int

    @property
    def key(self) -> tuple | None:
        return frames_key(self.sensor, self.day) if self.status == "ok" and self.sensor else None


def shard_name(b: int, n: int) -> str:
    return f"manifest-{b:05d}-of-{n:05d}.parquet"


def shard_of(uri: str, n: int) -> int:
    """The manifest shard of ``uri`` (stable across processes, unlike ``hash``)."""
    return zlib.crc32(uri.encode("utf-8")) % n


def manifest_files(uri: str) -> list[str] | None:
    """The Parquet file(s) of the manifest at ``uri`` (a file, or a complete directory of
    shards), or None when there is none or a shard is missing (logged)."""
    from sea_core import storage

    if storage.isfile(uri):
        return [uri]
    if not storage.isdir(uri):
        return None
    shards = {}
    for f in storage.glob(f"{uri.rstrip('/')}/manifest-*-of-*.parquet"):
        m = _SHARD.search(f)
        if m:
            shards[(int(m.group(1)), int(m.group(2)))] = f
    totals = {n for _, n in shards}
    if len(totals) == 1:
        n = totals.pop()
        if sorted(b for b, _ in shards) == list(range(n)):
            return [shards[(b, n)] for b in range(n)]
    log.warning("%s: incomplete manifest (shards %s); treated as absent - every recording is "
                "processed again", uri, sorted(shards))
    return None


def _check_schema(meta: dict, uri: str) -> None:
    if meta.get(b"sea.schema") != b"embed_manifest" or \
            meta.get(b"sea.schema_version") != MANIFEST_SCHEMA_VERSION.encode():
        raise SchemaError(f"{uri}: not an embed manifest of version {MANIFEST_SCHEMA_VERSION}")


def manifest_footer(uri: str) -> tuple[list[str], int, dict | None] | None:
    """(files, rows, settings) of the manifest at ``uri`` from the Parquet footers only (no
    rows are read: the launcher's cost is one footer per shard), or None when absent."""
    import pyarrow.parquet as pq

    from sea_core import storage

    files = manifest_files(uri)
    if files is None:
        return None
    rows, settings = 0, None
    for i, f in enumerate(files):
        fs, path = storage.url_to_fs(f)
        with fs.open(path, "rb") as fh:
            md = pq.ParquetFile(fh).metadata
        meta = md.metadata or {}
        _check_schema(meta, f)
        rows += md.num_rows
        if i == 0 and b"sea.settings" in meta:
            settings = json.loads(meta[b"sea.settings"])
    return files, rows, settings


def read_manifest(uri: str) -> tuple[dict[str, ManifestRow], dict | None]:
    """(rows by uri, settings) of a manifest, or ({}, None) when there is none.

    Reads every row into this process: for tests and small outputs (the pipeline
    reads manifests with :class:`ReadManifest`).
    """
    import pyarrow.parquet as pq

    from sea_core import storage

    found = manifest_footer(uri)
    if found is None:
        return {}, None
    files, _, settings = found
    rows = {}
    for f in files:
        fs, path = storage.url_to_fs(f)
        with fs.open(path, "rb") as fh:
            for r in pq.read_table(fh).to_pylist():
                rows[r["uri"]] = ManifestRow(**r)
    return rows, settings


def manifest_table(rows, settings: dict | None) -> pa.Table:
    """ManifestRows (in the given order) as a manifest table."""
    return pa.Table.from_pylist([r.__dict__ for r in rows], schema=manifest_schema(settings))


def write_shard(rows, settings: dict | None, url: str) -> int:
    """One manifest shard at ``url``, rows sorted by URI (fixed writer settings)."""
    from pipelines.transforms.write import PARQUET_OPTIONS
    from sea_core import storage

    table = manifest_table(sorted(rows, key=lambda r: r.uri), settings)
    return storage.publish_parquet(table, url, **PARQUET_OPTIONS)


def write_manifest(uri: str, rows: dict[str, ManifestRow], settings: dict,
                   n_shards: int | None = None) -> None:
    """Write ``rows`` as a manifest directory at ``uri`` from this process (tests, tools; the
    embed job's workers write theirs, see :mod:`pipelines.transforms.finalize`)."""
    import tempfile

    n = n_shards or max(1, -(-len(rows) // MANIFEST_SHARD_ROWS))
    buckets: dict[int, list] = {b: [] for b in range(n)}
    for r in rows.values():
        buckets[shard_of(r.uri, n)].append(r)
    with tempfile.TemporaryDirectory(prefix="sea-manifest-") as tmp:
        for b, rs in buckets.items():
            write_shard(rs, settings, f"{tmp}/{shard_name(b, n)}")
        publish_manifest(tmp, uri)


def publish_manifest(shards_dir: str, uri: str) -> int:
    """Replace the manifest at ``uri`` (file or directory) with the shards in ``shards_dir``.

    The old manifest goes first, then each shard is moved in: a publish cut short
    leaves an incomplete directory, which :func:`manifest_files` treats as absent
    (the next run reprocesses everything - slower, never wrong). Returns the shards moved.
    """
    from sea_core import storage

    shards = sorted(f for f in storage.glob(f"{shards_dir.rstrip('/')}/manifest-*-of-*.parquet")
                    if _SHARD.search(f))
    if storage.exists(uri):
        storage.rm(uri, recursive=storage.isdir(uri))
    fs, path = storage.url_to_fs(uri)
    fs.makedirs(path, exist_ok=True)
    for f in shards:
        sfs, spath = storage.url_to_fs(f)
        name = spath.rsplit("/", 1)[-1]
        if type(sfs) is type(fs):
            fs.mv(spath, f"{path}/{name}")
        else:  # the staging is on another filesystem (a local temp dir for a remote output)
            storage.publish_bytes(f"{uri.rstrip('/')}/{name}", storage.read_bytes(f))
    return len(shards)


def _manifest_parts(url: str):
    from sea_core import storage

    yield from storage.parquet_row_groups((manifest_files(url) or []) if url else [])


def _read_part(part):
    from sea_core import storage

    for r in storage.read_row_group(*part).to_pylist():
        yield ManifestRow(**r)


class ReadManifest(beam.PTransform):
    """The rows (:class:`ManifestRow`) of the manifest at ``url`` (None: no rows), read by the
    workers one row group per element. The graph holds only the URL."""

    def __init__(self, url: str | None, label: str | None = None):
        super().__init__(label)
        self._url = url or ""

    def expand(self, pbegin):
        return (pbegin
                | "ManifestUrl" >> beam.Create([self._url], reshuffle=False)
                | "RowGroups" >> beam.FlatMap(_manifest_parts)
                | "SpreadRowGroups" >> beam.Reshuffle()
                | "ReadRows" >> beam.FlatMap(_read_part))


@dataclass
class Plan:
    """What a run processes and which partitions it rebuilds."""

    listed: list[InputFile]
    process: list[InputFile]
    """New or changed recordings (all of them in a full run)."""
    unchanged: list[str]
    removed: list[str]
    changed: list[str]
    touches: list[Touch]
    previous: dict[str, ManifestRow] = field(default_factory=dict)
    incremental: bool = False

    @property
    def touched_keys(self) -> set[tuple]:
        return {tuple(t.key) for t in self.touches}


def _key_of(uri: str, params: RelevanceParams) -> tuple | None:
    try:
        n = parse_recording_path(uri, params)
    except AudioError:
        return None
    return frames_key(n.sensor, n.day)


def plan_run(listed: list[InputFile], previous: dict[str, ManifestRow], *, incremental: bool,
             keys_on_disk: list[tuple], params: RelevanceParams = RELEVANCE) -> Plan:
    """Decide what to process and which partitions to rebuild with which kept rows.

    Full run (or no previous manifest): process everything; every partition on
    disk and every partition of a listed file is rebuilt from new rows only.
    Incremental: process new or changed files (size or version differs); a
    partition is rebuilt when it gets new rows or loses a changed / removed
    recording, keeping the rows of its unchanged 'ok' recordings; partitions on
    disk that the manifest does not know (left by an interrupted run) are rebuilt
    too. The dead-letter file is always rebuilt (keeping unchanged dead inputs).
    """
    listed_by = {f.uri: f for f in listed}
    if not incremental or not previous:
        previous_used: dict[str, ManifestRow] = {}
        process = list(listed)
        changed, unchanged = [], []
        removed = sorted(set(previous) - set(listed_by)) if previous else []
    else:
        previous_used = previous
        process, changed, unchanged = [], [], []
        for f in listed:
            old = previous.get(f.uri)
            if old is None:
                process.append(f)
            elif old.size != f.size or old.version != f.version or f.size < 0:
                process.append(f)
                changed.append(f.uri)
            else:
                unchanged.append(f.uri)
        removed = sorted(set(previous) - set(listed_by))

    keep: dict[tuple, set[str]] = {}
    for u in unchanged:
        row = previous_used[u]
        k = row.key if row.status == "ok" else DEAD_LETTER_KEY
        if k is not None:
            keep.setdefault(k, set()).add(u)
    affected: set[tuple] = {DEAD_LETTER_KEY}
    for f in process:
        k = _key_of(f.uri, params)
        if k is not None:
            affected.add(k)
    for u in list(changed) + list(removed):
        row = previous_used.get(u)
        if row is not None and row.key is not None:
            affected.add(row.key)
    known = {r.key for r in previous_used.values() if r.key is not None}
    affected.update(k for k in keys_on_disk if k not in known)
    touches = [Touch(key=k, keep_uris=frozenset(keep.get(k, ()))) for k in sorted(affected)]
    return Plan(listed=list(listed), process=process, unchanged=unchanged, removed=removed,
                changed=changed, touches=touches, previous=previous,
                incremental=bool(incremental and previous))


def check_settings(previous: dict | None, current: dict) -> None:
    """Refuse an incremental run whose teacher / framing differs from the existing output."""
    if previous is None:
        return
    diff = {k: (previous.get(k), v) for k, v in current.items() if previous.get(k) != v}
    if diff:
        raise ParameterError(
            "--incremental: the existing output was built with other settings "
            + ", ".join(f"{k}={a!r} (now {b!r})" for k, (a, b) in sorted(diff.items()))
            + "; run without --incremental (or into a new --output) to rebuild it")
