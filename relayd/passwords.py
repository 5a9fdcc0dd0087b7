"""Verify SMTP passwords against Django's pbkdf2_sha256 hashes without importing Django."""

from __future__ import annotations

import binascii
import hashlib
import hmac

ALGORITHM = "pbkdf2_sha256"


def parse_password_hash(encoded: str) -> tuple[int, str, bytes]:
    """Return (iterations, salt, digest) of a pbkdf2_sha256$ITERATIONS$SALT$BASE64 hash; raise ValueError."""
    parts = encoded.split("$")
    if len(parts) != 4 or parts[0] != ALGORITHM:
        raise ValueError(f"must be {ALGORITHM}$ITERATIONS$SALT$BASE64HASH (Django's default hasher)")
    _, iterations, salt, digest = parts
    if not (iterations.isascii() and iterations.isdigit()) or iterations[0] == "0":
        raise ValueError("iteration count must be a positive whole number")
    if not salt:
        raise ValueError("salt is empty")
    try:
        raw = binascii.a2b_base64(digest, strict_mode=True)
    except binascii.Error:
        raise ValueError("hash is not valid base64") from None
    if len(raw) != hashlib.sha256().digest_size:
        raise ValueError("hash is not a SHA-256 digest (32 bytes)")
    return int(iterations), salt, raw


def verify_password(password: str, encoded: str) -> bool:
    """Return whether password matches the hash, comparing in constant time."""
    try:
        iterations, salt, expected = parse_password_hash(encoded)
    except ValueError:
        return False
    actual = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return hmac.compare_digest(actual, expected)
