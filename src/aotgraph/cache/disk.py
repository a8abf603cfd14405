"""The compile cache on disk: one checksummed file per key, written atomically, read only
from a directory that nobody but the current user can write to.

Layout under the cache directory (`cache_directory`): ``entries/<key[:2]>/<key>`` holds one
entry: a magic line, its key on a line, the SHA-256 of the payload, the payload. ``stats/hits`` and
``stats/misses`` grow by one byte per lookup (an ``O_APPEND`` write is atomic, so processes
sharing the cache lose no count; their sizes are the counters). ``manifests/<key[:2]>/<key>``
holds the entry's key manifest (`manifests`, JSON: the parts its key was made of), written and
removed with it, read to explain a miss and by ``python -m aotgraph cache info --verbose``.

- Writes go to a temporary file in the entry's directory, then ``os.replace``: a reader sees
  the old entry, the new one, or none, never a partial one; two processes writing the same
  key both succeed and leave one valid entry.
- A read whose magic, key or checksum does not match (truncated, flipped bytes, another
  entry's file put in its place) warns (`CacheCorruptionWarning`), removes the entry and answers None: the
  caller compiles again.
- With a remote tier (`remote.RedisTier`, ``AOTGRAPH_REMOTE_CACHE``), a local miss reads
  through to it and a write goes to it behind, with the same checks.
- Loading an entry runs code (unpickling, Inductor's modules), so the directory and its
  ``entries`` folders must belong to the current user and not be writable by group or
  others; otherwise `CacheDirError` says which path and how to fix it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .. import config
from ..errors import AotGraphError
from .manifests import KeyParts, parts_from_json
from .remote import tier_for

__all__ = ["DiskCache", "CacheDirError", "CacheCorruptionWarning", "cache_directory", "CacheStats"]

_MAGIC = b"aotgraph-cache-entry 1\n"
_DIGEST_BYTES = 32


class CacheDirError(AotGraphError):
    """The cache directory is not safe to load code from."""

    kind = "CacheDirError"


class CacheCorruptionWarning(UserWarning):
    """A cache entry failed its checksum (or could not be loaded): removed, compiled again."""


def cache_directory() -> Path:
    """`config.cache_dir` (``AOTGRAPH_CACHE_DIR``), else the user's cache directory + ``aotgraph``."""
    if config.cache_dir:
        return Path(config.cache_dir)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("aotgraph"))
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "aotgraph"


@dataclass(frozen=True)
class CacheStats:
    directory: Path
    entries: int
    bytes: int
    hits: int
    misses: int


class DiskCache:
    """Entries by key (hex strings) under `directory`; see the module docstring for the rules."""

    def __init__(self, directory: Optional[Path] = None, remote_url: Optional[str] = None):
        """`remote_url`: a Redis tier shared with other machines (`remote.RedisTier`); None:
        `config.remote_cache` (``AOTGRAPH_REMOTE_CACHE``), where set."""
        self.directory = Path(directory) if directory is not None else cache_directory()
        url = remote_url or config.remote_cache
        self.remote = tier_for(url) if url else None
        self._checked = False

    @property
    def _entries(self) -> Path:
        return self.directory / "entries"

    def _entry_path(self, key: str) -> Path:
        return self._entries / key[:2] / key

    def _manifest_path(self, key: str) -> Path:
        return self.directory / "manifests" / key[:2] / key

    def ensure_safe(self) -> None:
        """Create the directory (mode 0700) if needed and refuse one that others may write."""
        if self._checked:
            return
        for path in (self.directory, self._entries, self.directory / "stats", self.directory / "manifests"):
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as error:
                raise CacheDirError(f"cannot create the cache directory {path}: {error}", "cache",
                                    "set AOTGRAPH_CACHE_DIR to a directory you own, or AOTGRAPH_CACHE=0") from None
            _check_private(path)
        self._checked = True

    def read(self, key: str) -> Optional[bytes]:
        """The payload stored under `key`, or None (absent, or corrupt: then warned and removed).
        Counts a hit or a miss."""
        self.ensure_safe()
        path = self._entry_path(key)
        try:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_uid != os.getuid():
                    raise CacheDirError(f"the cache entry {path} belongs to another user", "cache",
                                        "remove it, or point AOTGRAPH_CACHE_DIR to a directory only you can write")
                data = file.read()
        except FileNotFoundError:
            payload = self._read_remote(key)
            self.count("misses" if payload is None else "hits")
            return payload
        payload = _verified(data, key)
        if payload is None:
            self.discard(key, "its checksum or key does not match (truncated, corrupted or replaced)", remote=False)
            payload = self._read_remote(key)
        self.count("misses" if payload is None else "hits")
        return payload

    def _read_remote(self, key: str) -> Optional[bytes]:
        """Read-through: the remote tier's entry for `key`, checked, then kept locally too."""
        data = self.remote.get(key) if self.remote is not None else None
        if data is None:
            return None
        payload = _verified(data, key)
        if payload is None:
            self.discard(key, f"the remote entry in {self.remote.url} does not match its checksum or key")
            return None
        self._write_file(key, data)
        return payload

    def write(self, key: str, payload: bytes, manifest: Optional[bytes] = None) -> None:
        """Store `payload` under `key` atomically (temporary file, then rename), and behind,
        in the remote tier; `manifest` (`manifests.manifest_json`) next to it, locally."""
        self.ensure_safe()
        data = _header(key) + hashlib.sha256(payload).digest() + payload
        if manifest is not None:
            _write_atomically(self._manifest_path(key), manifest)
        self._write_file(key, data)
        if self.remote is not None:
            self.remote.put_behind(key, data)

    def manifests(self, newest: Optional[int] = None) -> list[tuple[str, KeyParts]]:
        """``(key, parts)`` of the stored manifests, newest first (all, or the `newest` ones;
        unreadable ones skipped)."""
        folder = self.directory / "manifests"
        dated = []
        for path in folder.glob("*/*") if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                if not path.name.startswith(".tmp-"):
                    dated.append((path.stat().st_mtime, path))
        found = []
        for _, path in sorted(dated, key=lambda d: d[0], reverse=True)[:newest]:
            with contextlib.suppress(OSError, ValueError):
                found.append((path.name, parts_from_json(path.read_bytes())))
        return found

    def _write_file(self, key: str, data: bytes) -> None:
        _write_atomically(self._entry_path(key), data)

    def discard(self, key: str, why: str, remote: bool = True, read_as_hit: bool = False) -> None:
        """Remove the entry of `key` (with `remote`, from the remote tier too) with a
        `CacheCorruptionWarning` saying `why`; `read_as_hit`: `read` counted it a hit, which
        becomes a miss (its payload could not be loaded)."""
        if read_as_hit:
            self.count("unloadable")
        path = self._entry_path(key)
        warnings.warn(f"aotgraph: the compile cache entry {path} was removed and will be compiled again: {why}",
                      CacheCorruptionWarning, stacklevel=3)
        for stale in (path, self._manifest_path(key)):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        if remote and self.remote is not None:
            self.remote.delete(key)

    def count(self, counter: str) -> None:
        descriptor = os.open(self.directory / "stats" / counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, b".")
        finally:
            os.close(descriptor)

    def stats(self) -> CacheStats:
        files = [p for p in self._entries.glob("*/*") if p.is_file() and not p.name.startswith(".tmp-")] \
            if self._entries.is_dir() else []
        unloadable = self._counter("unloadable")
        return CacheStats(self.directory, len(files), sum(p.stat().st_size for p in files),
                          self._counter("hits") - unloadable, self._counter("misses") + unloadable)

    def _counter(self, counter: str) -> int:
        try:
            return (self.directory / "stats" / counter).stat().st_size
        except FileNotFoundError:
            return 0

    def clear(self) -> int:
        """Remove every entry and reset the counters; the number of entries removed."""
        removed = 0
        if self._entries.is_dir():
            for path in self._entries.glob("*/*"):
                if path.is_file():
                    path.unlink()
                    removed += not path.name.startswith(".tmp-")
        for path in (self.directory / "manifests").glob("*/*"):
            path.unlink()
        for counter in ("hits", "misses", "unloadable"):
            with contextlib.suppress(FileNotFoundError):
                (self.directory / "stats" / counter).unlink()
        return removed


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _header(key: str) -> bytes:
    return _MAGIC + key.encode() + b"\n"


def _verified(data: bytes, key: str) -> Optional[bytes]:
    """The payload of an entry file's `data`, or None where its header is not that of `key`
    or its checksum does not match."""
    header = _header(key)
    start = len(header) + _DIGEST_BYTES
    if len(data) < start or not data.startswith(header):
        return None
    payload = data[start:]
    return payload if hashlib.sha256(payload).digest() == data[len(header):start] else None


def _check_private(path: Path) -> None:
    info = path.stat()
    if info.st_uid != os.getuid():
        raise CacheDirError(f"the cache directory {path} belongs to another user (uid {info.st_uid}); loading an "
                            "entry runs code, so aotgraph loads only from directories you own", "cache",
                            "point AOTGRAPH_CACHE_DIR to a directory of your own, or set AOTGRAPH_CACHE=0")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheDirError(f"the cache directory {path} is writable by group or others (mode "
                            f"{stat.filemode(info.st_mode)}); loading an entry runs code, so aotgraph loads only "
                            "from directories nobody else can write", "cache",
                            f"run chmod go-w {path}, point AOTGRAPH_CACHE_DIR elsewhere, or set AOTGRAPH_CACHE=0")

