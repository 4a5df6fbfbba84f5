"""The caches a run can reuse (the primed adapter, the difficulty filter's pass rates): an entry is named by
a hash of everything that decides it, and is reused only when its stored key is that key.
"""

from __future__ import annotations

import json
import os


def cache_file(folder: str, key: dict, suffix: str = "") -> str:
    """Where the cache entry for `key` lives in `folder`: named by a hash of the key as JSON."""
    import hashlib

    return os.path.join(
        folder, hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16] + suffix
    )


def same_key(stored, key: dict) -> bool:
    """Whether a key read back from a cache entry is `key` (compared as the JSON it was written as)."""
    return stored == json.loads(json.dumps(key, default=str))
