"""Database URLs as operators write them: libpq's `sslmode`/`sslrootcert` parameters mapped for asyncpg."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from shadowd.credentials import redact_url

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq names; asyncpg takes none of them as keyword arguments, so they never reach it raw.
_LIBPQ_TLS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword")


class DatabaseUrlError(ValueError):
    """A database URL shadowd cannot use; the message never holds the password."""


@dataclass(frozen=True, slots=True)
class EngineTarget:
    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def engine_target(raw: str) -> EngineTarget:
    """The SQLAlchemy URL and asyncpg connect arguments for `raw`, with `sslmode=...` turned into a TLS context."""
    try:
        url = make_url(normalise_url(raw))
    except (ArgumentError, ValueError):
        # SQLAlchemy's own message may quote the URL, password included.
        raise DatabaseUrlError(f"not a database URL: {redact_url(raw)!r}") from None
    if url.get_backend_name() != "postgresql":
        return EngineTarget(url)
    query = dict(url.query)
    tls: dict[str, str] = {}
    for key in _LIBPQ_TLS:
        value = query.pop(key, None)
        if isinstance(value, tuple):
            raise DatabaseUrlError(f"the database URL gives {key} more than once")
        if value is not None:
            tls[key] = value
    if not tls:
        return EngineTarget(url)
    if "ssl" in query:
        raise DatabaseUrlError("the database URL has both ssl= and sslmode=/sslrootcert=...; keep one")
    context = tls_for(
        tls.get("sslmode", "prefer"), rootcert=tls.get("sslrootcert"), cert=tls.get("sslcert"),
        key=tls.get("sslkey"), password=tls.get("sslpassword"),
    )
    return EngineTarget(url.set(query=query), {"ssl": context})


def tls_for(
    mode: str, *, rootcert: str | None = None, cert: str | None = None, key: str | None = None,
    password: str | None = None,
) -> ssl.SSLContext | str | bool:
    """What asyncpg's `ssl=` needs for a libpq `sslmode`, with libpq's meaning of each mode.

    `require` encrypts without checking the server, unless `sslrootcert` is given (then, as libpq,
    the CA is checked); `verify-ca` checks the CA; `verify-full` also the host name. Without
    `sslrootcert` the verifying modes use the system trust store (libpq's `sslrootcert=system`).
    """
    if mode not in SSLMODES:
        raise DatabaseUrlError(f"sslmode={mode!r} in the database URL is not one of {', '.join(SSLMODES)}")
    for name, path in (("sslrootcert", rootcert), ("sslcert", cert), ("sslkey", key)):
        if path is not None and path != "system" and not Path(path).is_file():
            raise DatabaseUrlError(f"{name}={path} in the database URL: no such file")
    if key is not None and cert is None:
        raise DatabaseUrlError("sslkey in the database URL needs sslcert (the client certificate) too")
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        if cert is not None:
            raise DatabaseUrlError(f"sslcert in the database URL needs sslmode=require or stricter, not {mode}")
        return mode  # asyncpg's own fallback: TLS when the server offers it, never verified (as libpq)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    verify = mode in ("verify-ca", "verify-full") or rootcert is not None
    context.check_hostname = mode == "verify-full"
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            if rootcert is None or rootcert == "system":
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=rootcert)
        except ssl.SSLError as exc:
            raise DatabaseUrlError(f"sslrootcert={rootcert} in the database URL: not a PEM certificate ({exc.reason})") \
                from None
    else:
        context.verify_mode = ssl.CERT_NONE
    if cert is not None:
        try:
            context.load_cert_chain(cert, keyfile=key, password=password)
        except ssl.SSLError as exc:
            raise DatabaseUrlError(f"sslcert/sslkey in the database URL cannot be used: {exc.reason or exc}") from None
    return context


__all__ = ["SSLMODES", "DatabaseUrlError", "EngineTarget", "engine_target", "normalise_url", "tls_for"]
