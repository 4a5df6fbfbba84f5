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


# safetensors refuses a header longer than this (safetensors/src/tensor.rs, MAX_HEADER_SIZE): a corrupted
# length never makes the check read more
SAFETENSORS_MAX_HEADER = 100_000_000


def unreadable(path: str) -> str | None:
    """Why the file at `path` cannot be loaded, in a few words, or None when it reads: JSON parses,
    a .pt/.pth/.bin is a whole zip archive, a .safetensors holds the bytes its header promises. Reads
    headers within the format's own limits, never what a corrupted length asks for."""
    import zipfile

    try:
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                json.load(f)
        elif path.endswith((".pt", ".pth", ".bin")):
            with zipfile.ZipFile(path) as archive:
                if archive.testzip() is not None:
                    return "a damaged member"
        elif path.endswith(".safetensors"):
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                length = int.from_bytes(f.read(8), "little")
                if size < 8 or not 0 < length <= min(SAFETENSORS_MAX_HEADER, size - 8):
                    return f"a header length of {length} bytes in a file of {size}"
                header = json.loads(f.read(length))
            ends = [v["data_offsets"][1] for name, v in header.items() if name != "__metadata__"]
            if size < 8 + length + max(ends, default=0):
                return "shorter than its header says"
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError, AttributeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def first_unreadable(folder: str) -> tuple[str, str] | None:
    """(path, why) of the first file in `folder` (and below) that does not read, or None."""
    for parent, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            why = unreadable(os.path.join(parent, name))
            if why:
                return os.path.join(parent, name), why
    return None


def set_aside(entry: str, why: str) -> str:
    """Move an unreadable cache entry (a folder or a file) to ENTRY.unreadable, replacing an older one,
    and say so in one line: it is neither reused nor deleted, and the caller makes the entry again."""
    import shutil

    aside = entry + ".unreadable"
    if os.path.isdir(aside):
        shutil.rmtree(aside, ignore_errors=True)
    elif os.path.exists(aside):
        os.remove(aside)
    os.replace(entry, aside)
    print(f"note: the cache entry {entry} cannot be read ({why}); ignored, moved to {aside}, and made again")
    return aside
