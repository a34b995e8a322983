"""Worker secrets: bcrypt hashes in the database, and a cache so bcrypt runs once per worker process.

A verified secret is remembered as a keyed BLAKE2 MAC under a key that lives only in this process's memory, so
the cache holds nothing that could be replayed, and checking it costs microseconds instead of the
bcrypt cost on every request.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import secrets

import bcrypt

# Flamenco stores worker secrets with bcrypt at its minimum cost; the secret is already 256 random bits.
BCRYPT_ROUNDS = 4
# Verified secrets kept; far above any farm's worker count, small in memory (≈100 bytes each).
CACHE_SIZE = 20_000

_DUMMY_HASH = bcrypt.hashpw(b"no such worker", bcrypt.gensalt(BCRYPT_ROUNDS))


class SecretCache:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._verified: collections.OrderedDict[str, tuple[bytes, str]] = collections.OrderedDict()

    def _digest(self, secret: str) -> bytes:
        # Keyed BLAKE2 is a MAC in one C call, cheaper than the hmac module's Python wrapper.
        return hashlib.blake2b(secret.encode(), key=self._key, digest_size=32).digest()

    def check(self, worker_uuid: str, secret: str, stored_hash: str) -> bool:
        """True if this secret was verified before against the same stored hash."""
        entry = self._verified.get(worker_uuid)
        if entry is None or entry[1] != stored_hash:
            return False
        return hmac.compare_digest(entry[0], self._digest(secret))

    def remember(self, worker_uuid: str, secret: str, stored_hash: str) -> None:
        self._verified[worker_uuid] = (self._digest(secret), stored_hash)
        self._verified.move_to_end(worker_uuid)
        while len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    def forget(self, worker_uuid: str) -> None:
        self._verified.pop(worker_uuid, None)


async def hash_secret(secret: str) -> str:
    raw = secret.encode()
    hashed = await asyncio.to_thread(bcrypt.hashpw, raw, bcrypt.gensalt(BCRYPT_ROUNDS))
    return hashed.decode()


async def verify_secret(secret: str, stored_hash: str | None) -> bool:
    """bcrypt check off the event loop; an unknown worker is checked against a dummy hash."""
    target = stored_hash.encode() if stored_hash else _DUMMY_HASH
    try:
        ok = await asyncio.to_thread(bcrypt.checkpw, secret.encode(), target)
    except ValueError:
        return False
    return ok and stored_hash is not None
