"""Stable seeds derived from a base seed and named keys.

Python's ``hash()`` is salted per process, so it must never feed a seed.
:func:`derive_seed` hashes the keys with SHA-256: the same (seed, keys) gives
the same integer on every machine and in every process.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(base_seed: int, *keys: object) -> int:
    """A 63-bit seed that depends only on ``base_seed`` and ``keys`` (as strings)."""
    text = "\x1f".join([str(int(base_seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def rng(base_seed: int, *keys: object) -> np.random.Generator:
    """A NumPy generator seeded by :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(base_seed, *keys))
