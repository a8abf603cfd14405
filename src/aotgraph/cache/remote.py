"""The shared tier of the compile cache: a Redis server (``AOTGRAPH_REMOTE_CACHE=
redis://host:port/db``, the optional ``redis`` client: ``pip install aotgraph[redis]``).

Read-through: a key missing locally is read from Redis and, when its checks pass, written to
the local directory too. Write-behind: a new entry goes to Redis from a background thread, so
a compile never waits for the network; `RedisTier.flush` (also at exit) waits for pending
writes. Values are the local entry files, byte for byte (magic, key, checksum, payload), and
pass the same checks: a damaged or foreign value warns, is deleted from Redis and misses.
Whoever can write to the server can make this process run code: point it only at a server
your team controls, as you would a shared directory.
"""
from __future__ import annotations

import atexit
import queue
import threading
from typing import Optional

from ..debug import logger
from ..errors import BadArgument

__all__ = ["RedisTier", "tier_for"]

_PREFIX = "aotgraph:"
_STOP = None


class RedisTier:
    """One Redis database as the remote tier (`url`: ``redis://host:port/db``)."""

    def __init__(self, url: str):
        try:
            import redis
        except ImportError:
            raise BadArgument(f"AOTGRAPH_REMOTE_CACHE={url!r} needs the redis client, which is not installed", "cache",
                              "pip install 'aotgraph[redis]', or unset AOTGRAPH_REMOTE_CACHE") from None
        self.url = url
        self._client = redis.Redis.from_url(url, socket_timeout=10)
        self._errors = (redis.RedisError, OSError)
        self._pending: queue.Queue = queue.Queue()
        self._writer: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[bytes]:
        """The stored entry file for `key`, or None (absent, or the server unreachable: logged)."""
        try:
            return self._client.get(_PREFIX + key)
        except self._errors as error:
            logger.warning("aotgraph: the remote compile cache %s could not be read (%s)", self.url, error)
            return None

    def delete(self, key: str) -> None:
        try:
            self._client.delete(_PREFIX + key)
        except self._errors as error:
            logger.warning("aotgraph: the remote compile cache %s could not delete an entry (%s)", self.url, error)

    def put_behind(self, key: str, data: bytes) -> None:
        """Queue `data` for `key`; a background thread writes it."""
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_pending, name="aotgraph-remote-cache",
                                                daemon=True)
                self._writer.start()
                atexit.register(self.flush)
        self._pending.put((key, data))

    def flush(self) -> None:
        """Wait until every queued entry is written (or failed, logged)."""
        self._pending.join()

    def _write_pending(self) -> None:
        while True:
            key, data = self._pending.get()
            try:
                self._client.set(_PREFIX + key, data)
            except self._errors as error:
                logger.warning("aotgraph: the remote compile cache %s could not be written (%s)", self.url, error)
            finally:
                self._pending.task_done()


_tiers: dict[str, RedisTier] = {}


def tier_for(url: str) -> RedisTier:
    """The process's one `RedisTier` for `url` (one connection pool and writer thread)."""
    if url not in _tiers:
        _tiers[url] = RedisTier(url)
    return _tiers[url]
