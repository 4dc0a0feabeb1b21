"""A kintone user as an STS SourceIdentity, reversibly.

STS accepts 2 to 64 characters of `[\\w+=,.@-]` for SourceIdentity (and RoleSessionName). kintone
login names may hold any character, so the name is escaped rather than squeezed: ASCII letters,
digits and `_ . , @ -` stay as they are, every other character becomes `=` and the two upper-case
hex digits of each of its UTF-8 bytes (`=` itself is `=3D`). Two different users never share an
identity, and the name reads back with `decode` (`python -m lambdas.adapters.source_identity X`).

A name whose escaped form is longer than 64 keeps the first whole characters that fit in 50, then
`==` (which no escaped name contains) and the first 12 hex digits of the SHA-256 of the whole name.
A one-character name is escaped whole (`a` → `=61`), since two characters are the minimum.
"""

from __future__ import annotations

import hashlib
import re
import sys

MAX_LENGTH = 64
DIGEST_MARK = "=="
DIGEST_HEX_DIGITS = 12
_PREFIX_LENGTH = MAX_LENGTH - len(DIGEST_MARK) - DIGEST_HEX_DIGITS
_KEPT = re.compile(r"[A-Za-z0-9_.,@-]")
_ESCAPE = re.compile(r"=([0-9A-F]{2})")


def _escaped(character: str) -> str:
    return "".join(f"={byte:02X}" for byte in character.encode("utf-8", errors="surrogatepass"))


def encode(login: str) -> str:
    """The SourceIdentity for a kintone login name; empty for an empty name."""
    if not login:
        return ""
    parts = [character if _KEPT.fullmatch(character) else _escaped(character) for character in login]
    encoded = "".join(parts)
    if len(encoded) < 2:
        return _escaped(login)
    if len(encoded) <= MAX_LENGTH:
        return encoded
    prefix = ""
    for part in parts:
        if len(prefix) + len(part) > _PREFIX_LENGTH:
            break
        prefix += part
    digest = hashlib.sha256(login.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{prefix}{DIGEST_MARK}{digest[:DIGEST_HEX_DIGITS]}"


def decode(source_identity: str) -> str:
    """The login name back; a shortened one ends in `…` and the SHA-256 prefix of the whole name."""
    escaped, _, digest = source_identity.partition(DIGEST_MARK)
    name = _ESCAPE.sub(lambda match: chr(int(match[1], 16)), escaped)
    # Each escape is one byte: the latin-1 round trip turns the bytes back into UTF-8 text.
    login = name.encode("latin-1").decode("utf-8", errors="surrogatepass")
    return f"{login}… (sha256 {digest}…)" if digest else login


if __name__ == "__main__":
    for value in sys.argv[1:]:
        print(decode(value))
