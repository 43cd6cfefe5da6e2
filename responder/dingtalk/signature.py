"""Callback signatures, sans I/O: DingTalk signs the timestamp header with the robot's AppSecret.

See shared/dingtalk-protocol.md section 1; the signature covers the timestamp, not the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence

_TIMESTAMP = re.compile(r"[0-9]{13}")


class SignatureError(Exception):
    """The callback's timestamp/sign headers do not prove it came from DingTalk."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _repeated(headers: Mapping[str, str], name: str) -> bool:
    getall = getattr(headers, "getall", None)  # multidicts (aiohttp) keep every copy of a header
    return getall is not None and len(getall(name, ())) > 1


def sign(secret: str, timestamp: str) -> str:
    """Base64(HMAC-SHA256(secret, timestamp + "\\n" + secret)), the callback `sign` header."""
    string_to_sign = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), string_to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(headers: Mapping[str, str], secrets: Sequence[str], now_ms: int, window_ms: int) -> None:
    """Raise SignatureError unless `timestamp` is fresh and `sign` matches one of `secrets`.

    The signature covers only timestamp and secret, not the body; the window limits replays.
    """
    timestamp = headers.get("timestamp")
    signature = headers.get("sign")
    if timestamp is None or signature is None:
        raise SignatureError("missing_header")
    if _repeated(headers, "timestamp") or _repeated(headers, "sign"):
        raise SignatureError("duplicate_header")  # which one would a proxy have checked?
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("malformed_timestamp")
    skew = int(timestamp) - now_ms
    if skew > window_ms:
        raise SignatureError("timestamp_in_future")
    if -skew > window_ms:
        raise SignatureError("timestamp_expired")
    presented = signature.encode("utf-8", "replace")
    # Check every secret, so timing does not reveal which one matched.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign(secret, timestamp).encode("ascii"), presented)
    if not matched:
        raise SignatureError("bad_signature")
