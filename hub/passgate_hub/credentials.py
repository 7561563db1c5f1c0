"""Gate tokens and admin API keys as values: random, shown once, stored as SHA-256 hex.

Made and hashed here, checked on requests by ``auth``. Apart from ``auth`` (which imports FastAPI)
so the CLI, which makes them too, starts without loading the web framework.
"""

from __future__ import annotations

import hashlib
import secrets

GATE_PREFIX = "pgg_"
ADMIN_PREFIX = "pga_"


def new_secret(prefix: str) -> tuple[str, str]:
    """A fresh credential and the hash to store: ``(secret, sha256_hex)``."""
    secret = prefix + secrets.token_urlsafe(32)
    return secret, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
