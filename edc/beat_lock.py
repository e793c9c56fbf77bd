"""Exactly one Celery beat across nodes (issue 22): a Redis lock taken before beat starts and
renewed while it runs. Every node that may run beat starts `manage.py beat_locked`; the first one
takes the lock and runs beat, the others wait. If the holder dies, its lock expires after `ttl`
seconds and a waiting node takes over; if the holder cannot renew (Redis lost it, or another node
holds it after a partition), it stops at once rather than run beside another beat.

redis-py's Lock (a token under a key with an expiry, renewed only by its owner) does the locking.
"""

from __future__ import annotations

import os
import socket
import uuid

import redis
from redis.exceptions import LockError

KEY = "edc:beat-lock"


class BeatLock:
    def __init__(self, url: str, *, ttl: float = 30.0, key: str = KEY) -> None:
        self.client = redis.Redis.from_url(url)
        self.ttl = ttl
        self.key = key
        # Who holds it, for operators: the node (EDC_NODE, else the host name), the process, a nonce.
        self.token = f"{os.environ.get('EDC_NODE') or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = self.client.lock(key, timeout=ttl, thread_local=False)

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (never waits)."""
        return bool(self._lock.acquire(blocking=False, token=self.token))

    def renew(self) -> bool:
        """Reset the expiry to `ttl`; False when this node no longer holds the lock."""
        try:
            self._lock.reacquire()
        except LockError:
            return False
        return True

    def release(self) -> None:
        try:
            self._lock.release()
        except LockError:
            pass  # expired or taken over: nothing of ours to release

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if value else None
