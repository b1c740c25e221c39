"""Who is calling the HTTP API: named bearer tokens, kept as SHA-256 hashes, each with a role.

Tokens come from `SHADOWD_TOKENS_FILE` (YAML or JSON: name -> {sha256, role}) and, as the tokens
named `admin` and `read`, from `SHADOWD_ADMIN_TOKEN` and `SHADOWD_READ_TOKEN`. Failed attempts are
counted per client address; past the limit the address is answered 429 until the window passes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

Role = Literal["read", "admin"]
ROLES: tuple[Role, ...] = ("read", "admin")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
# RFC 6750 b64token: what a bearer credential may contain.
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
MAX_TOKEN_LENGTH = 4096


class TokenFileError(Exception):
    """A tokens file problem, naming the file and the entry."""

    def __init__(self, file: Path, key: str, detail: str) -> None:
        super().__init__(f"{file}: {key}: {detail}")
        self.file = file
        self.key = key
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return self.role == "admin" or role == self.role


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token, as the tokens file stores it."""
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).hexdigest()


class TokenRegistry:
    """Hashes only: a presented token is hashed and compared against every known hash."""

    def __init__(self, entries: Iterable[tuple[str, str, Role]] = ()) -> None:
        self._entries: list[tuple[bytes, Identity]] = []
        for name, digest, role in entries:
            self.add_hash(name, digest, role)

    def add_hash(self, name: str, digest: str, role: Role) -> None:
        if any(identity.name == name for _, identity in self._entries):
            raise ValueError(f"token name {name!r} is used twice")
        self._entries.append((bytes.fromhex(digest), Identity(name, role)))

    def add_token(self, name: str, token: str, role: Role) -> None:
        self.add_hash(name, hash_token(token), role)

    def __len__(self) -> int:
        return len(self._entries)

    def has_role(self, role: Role) -> bool:
        return any(identity.role == role for _, identity in self._entries)

    def names(self) -> list[str]:
        return [identity.name for _, identity in self._entries]

    def identify(self, token: str) -> Identity | None:
        digest = hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).digest()
        found: Identity | None = None
        for known, identity in self._entries:  # every entry compared: the time does not tell which matched
            if hmac.compare_digest(known, digest):
                found = identity
        return found


def load_tokens(
    file: Path | None, admin_token: str | None = None, read_token: str | None = None
) -> TokenRegistry:
    """The registry from the tokens file and the two single-token settings; problems raise TokenFileError."""
    registry = TokenRegistry()
    if file is not None:
        for name, digest, role in _read_tokens_file(file):
            registry.add_hash(name, digest, role)
    singles: tuple[tuple[str, str | None, Role], ...] = (("admin", admin_token, "admin"), ("read", read_token, "read"))
    for name, token, role in singles:
        if token:
            if name in registry.names():
                where = file or Path("<env>")
                raise TokenFileError(where, name, f"is also set by SHADOWD_{name.upper()}_TOKEN; keep one")
            registry.add_token(name, token, role)
    return registry


def _read_tokens_file(file: Path) -> list[tuple[str, str, Role]]:
    try:
        raw: Any = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TokenFileError(file, "(file)", f"cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TokenFileError(file, "(file)", f"not valid YAML or JSON: {exc}") from None
    if isinstance(raw, dict) and set(raw) == {"tokens"}:
        raw = raw["tokens"]
    if not isinstance(raw, dict) or not raw:
        raise TokenFileError(file, "(top level)", "must map token names to {sha256: <hex>, role: read|admin}")
    entries: list[tuple[str, str, Role]] = []
    for name, entry in raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise TokenFileError(file, str(name), "a token name is 1-64 letters, digits, '.', '_', '@' or '-'")
        if not isinstance(entry, dict):
            raise TokenFileError(file, name, "must be a mapping {sha256: <hex>, role: read|admin}")
        unknown = set(entry) - {"sha256", "role"}
        if "token" in entry or "secret" in entry:
            raise TokenFileError(
                file, name, "holds a clear-text token; store only its hash (sha256: `shadowd token hash`)"
            )
        if unknown:
            raise TokenFileError(file, f"{name}.{sorted(unknown)[0]}", "unknown key (known: sha256, role)")
        digest, role = entry.get("sha256"), entry.get("role", "read")
        if not isinstance(digest, str) or not _HEX.match(digest.lower()):
            raise TokenFileError(file, f"{name}.sha256", "must be the 64 hex digits of the token's SHA-256")
        if role not in ROLES:
            raise TokenFileError(file, f"{name}.role", f"must be read or admin, got {role!r}")
        entries.append((name, digest.lower(), role))
    return entries


def bearer_token(header: str | None) -> tuple[str | None, str | None]:
    """(token, None) from an Authorization header, or (None, why it cannot be used); (None, None) if absent."""
    if header is None:
        return None, None
    scheme, _, presented = header.strip().partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer":
        return None, "the Authorization header must be `Bearer <token>`"
    if not presented or len(presented) > MAX_TOKEN_LENGTH or not _B64TOKEN.match(presented):
        return None, "the bearer token is malformed"
    return presented, None


class AuthThrottle:
    """At most `max_failures` failed attempts per client address in `window_s`; then 429 until they age out."""

    def __init__(
        self,
        max_failures: int = 20,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        horizon = self.clock() - self.window_s
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it is not throttled."""
        times = self._recent(address)
        if times is None or len(times) < self.max_failures:
            return None
        return max(1.0, times[0] + self.window_s - self.clock())

    def failed(self, address: str) -> None:
        times = self._recent(address)
        if times is None:
            times = self._failures[address] = deque(maxlen=self.max_failures)
            while len(self._failures) > self.max_addresses:  # the oldest address is forgotten first
                self._failures.popitem(last=False)
        self._failures.move_to_end(address)
        times.append(self.clock())


__all__ = [
    "AuthThrottle",
    "Identity",
    "Role",
    "TokenFileError",
    "TokenRegistry",
    "bearer_token",
    "hash_token",
    "load_tokens",
]
