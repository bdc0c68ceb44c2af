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
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa

from pipelines.transforms.records import (DEAD_LETTER_KEY, InputFile, Touch, frames_key,
                                          parse_recording_path)
from pipelines.transforms.write import read_table_or_none, write_table_atomic
from sea_core.errors import AudioError, ParameterError, SchemaError
from sea_core.params import RELEVANCE, RelevanceParams

__all__ = ["MANIFEST_SCHEMA_VERSION", "manifest_schema", "ManifestRow", "read_manifest",
           "write_manifest", "Plan", "plan_run"]

MANIFEST_SCHEMA_VERSION = "1"


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


def read_manifest(uri: str) -> tuple[dict[str, ManifestRow], dict | None]:
    """(rows by uri, settings) of a manifest, or ({}, None) when there is none."""
    table = read_table_or_none(uri)
    if table is None:
        return {}, None
    meta = table.schema.metadata or {}
    if meta.get(b"sea.schema") != b"embed_manifest" or \
            meta.get(b"sea.schema_version") != MANIFEST_SCHEMA_VERSION.encode():
        raise SchemaError(f"{uri}: not an embed manifest of version {MANIFEST_SCHEMA_VERSION}")
    settings = json.loads(meta[b"sea.settings"]) if b"sea.settings" in meta else None
    rows = {r["uri"]: ManifestRow(**r) for r in table.to_pylist()}
    return rows, settings


def write_manifest(uri: str, rows: dict[str, ManifestRow], settings: dict) -> None:
    schema = manifest_schema(settings)
    ordered = [rows[u].__dict__ for u in sorted(rows)]
    write_table_atomic(pa.Table.from_pylist(ordered, schema=schema), uri)


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
