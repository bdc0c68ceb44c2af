"""Data paths as fsspec URLs (local paths, ``file://``, ``gs://``, ``s3://``, ``memory://``).

Every stage reads and writes its data through these helpers, so the same code
runs on a laptop and on a distributed runner whose workers share nothing but an
object store. ONE publish rule for every writer:

* :func:`publish_bytes` / :func:`publish_parquet` write the object under a
  hidden temporary key beside the target (``.<name>.tmp-<uuid>``) and then move
  it onto the target key (a rename on local disks and HDFS-like stores, a
  server-side copy + delete on object stores), so a reader never sees a torn
  object: a key exists only when complete.
* A directory-shaped output is complete when its ``_SUCCESS`` marker exists;
  :func:`mark_success` writes it, after everything else.

fsspec's own transactions (``fs.transaction``) defer the commit of the files
opened inside one ``with`` block of one process; the writers here run in many
worker processes, so the explicit temp-key + move is used instead (same effect
per object, works across processes and on every fsspec backend).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import uuid

import fsspec

__all__ = ["url_to_fs", "join", "is_url", "exists", "isfile", "isdir", "glob", "read_bytes",
           "read_text", "read_json", "publish_bytes", "publish_text", "publish_json",
           "publish_parquet", "mark_success", "SUCCESS_NAME", "absolute", "size", "rm", "publish_tree", "fetch", "sha256_file",
           "parquet_row_groups", "read_row_group"]

SUCCESS_NAME = "_SUCCESS"


def is_url(path) -> bool:
    return "://" in str(path)


def absolute(path) -> str:
    """Local relative paths -> absolute (workers may run elsewhere); URLs unchanged."""
    s = str(path)
    if is_url(s):
        return s
    return os.path.abspath(os.path.expanduser(s))


_NO_LISTINGS_CACHE = ("s3", "s3a", "gs", "gcs")
"""Object-store protocols opened without fsspec's listings cache: outputs are rewritten within one
run (an incremental run rebuilds partitions that its plan job listed), and a cached listing holds
the old ETag/size, so s3fs refuses the later read (``FileExpired``) on a reused worker."""


def url_to_fs(url):
    u = str(url)
    if u.split("://", 1)[0] in _NO_LISTINGS_CACHE and "://" in u:
        return fsspec.core.url_to_fs(u, use_listings_cache=False)
    return fsspec.core.url_to_fs(u)


def join(base, *parts: str) -> str:
    """``base/part/...`` keeping the URL protocol of ``base``."""
    out = str(base).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


def _full(fs, original: str, path: str) -> str:
    """Re-attach the protocol ``fs`` strips (local paths stay plain)."""
    if is_url(original) and not str(original).startswith("file://"):
        return fs.unstrip_protocol(path)
    return path


def exists(url) -> bool:
    fs, path = url_to_fs(url)
    return fs.exists(path)


def isfile(url) -> bool:
    fs, path = url_to_fs(url)
    return fs.isfile(path)


def isdir(url) -> bool:
    fs, path = url_to_fs(url)
    return fs.isdir(path)


def size(url) -> int:
    fs, path = url_to_fs(url)
    return int(fs.size(path))


def glob(pattern) -> list[str]:
    """Sorted URLs matching ``pattern`` (same protocol as the pattern)."""
    fs, path = url_to_fs(pattern)
    try:
        found = fs.glob(path)
    except (FileNotFoundError, OSError):
        return []
    return sorted(_full(fs, str(pattern), p) for p in found)


def rm(url, recursive: bool = False) -> None:
    fs, path = url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def read_bytes(url) -> bytes:
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as f:
        return f.read()


def read_text(url) -> str:
    return read_bytes(url).decode("utf-8")


def read_json(url):
    return json.loads(read_text(url))


def sha256_file(url) -> str:
    """Hex sha256 of a file, or of a directory's files (relative names + bytes, sorted),
    at a local path or any fsspec URL. The ONE file-hash helper of the project."""
    fs, path = url_to_fs(url)
    h = hashlib.sha256()
    if fs.isdir(path):
        root = path.rstrip("/")
        for f in sorted(fs.find(root)):
            h.update(f[len(root):].lstrip("/").encode())
            _hash_into(h, fs, f)
    else:
        _hash_into(h, fs, path)
    return h.hexdigest()


def _hash_into(h, fs, path) -> None:
    with fs.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def parquet_row_groups(files):
    """``(file, row group index)`` for every row group of the Parquet ``files`` (footers only):
    the unit in which workers read a staged or manifest table."""
    import pyarrow.parquet as pq

    for f in files:
        fs, path = url_to_fs(f)
        with fs.open(path, "rb") as fh:
            n = pq.ParquetFile(fh).num_row_groups
        for i in range(n):
            yield f, i


def read_row_group(url, index: int):
    """Row group ``index`` of the Parquet file at ``url`` as a ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).read_row_group(index)


def _publish(url, write) -> int:
    fs, path = url_to_fs(url)
    parent, name = path.rsplit("/", 1) if "/" in path else ("", path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}" if parent else f".{name}.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open(tmp, "wb") as f:
            write(f)
        fs.mv(tmp, path)
    finally:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        except OSError:
            pass
    return int(fs.size(path))


def publish_bytes(url, data: bytes) -> int:
    """Write ``data`` to ``url`` (temp key, then move). Returns the bytes written."""
    return _publish(url, lambda f: f.write(data))


def publish_text(url, text: str) -> int:
    return publish_bytes(url, text.encode("utf-8"))


def publish_json(url, obj, **kwargs) -> int:
    return publish_text(url, json.dumps(obj, **kwargs))


def publish_parquet(table, url, **options) -> int:
    """``pyarrow.parquet.write_table(table, ..., **options)`` published at ``url``."""
    import pyarrow.parquet as pq

    def write(f):
        buf = io.BytesIO()  # pyarrow wants a seekable sink on some fsspec backends
        pq.write_table(table, buf, **options)
        f.write(buf.getvalue())
    return _publish(url, write)


def mark_success(directory) -> None:
    """Write ``<directory>/_SUCCESS`` (call it last: the output is complete)."""
    publish_bytes(join(directory, SUCCESS_NAME), b"")


def publish_tree(local_dir, url) -> int:
    """Publish every file under the local directory ``local_dir`` to ``url/<relative path>``
    (each through :func:`publish_bytes`). Returns the bytes written."""
    from pathlib import Path

    root = Path(local_dir)
    total = 0
    for p in sorted(root.rglob("*")):
        if p.is_file():
            total += publish_bytes(join(url, p.relative_to(root).as_posix()), p.read_bytes())
    return total


def fetch(url, local) -> str:
    """A local copy of the file or directory ``url`` at the local path ``local`` (kept if present)."""
    from pathlib import Path

    dst = Path(local)
    if dst.exists():
        return str(dst)
    fs, path = url_to_fs(url)
    if fs.isdir(path):
        root = path.rstrip("/")
        for f in sorted(fs.find(root)):
            target = dst / f[len(root):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f, str(target))
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(dst))
    return str(dst)
