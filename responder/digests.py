"""Fixed-size keys for maps keyed by message data (msgIds, conversation ids, cooldown keys).

Identifiers are capped in bytes on arrival; keying the bounded maps by a 16-byte digest on top
makes their entry caps bound their memory exactly, whatever the identifiers look like.
"""

from __future__ import annotations

import hashlib


def digest(text: str) -> bytes:
    """16 bytes that stand for `text` (BLAKE2b: collisions are not a practical concern)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
