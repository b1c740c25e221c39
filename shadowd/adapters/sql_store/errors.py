"""Which database errors are about the rows sent (StoreRefused) and which about the server (StoreUnavailable)."""

from __future__ import annotations

from sqlalchemy import exc as sqlalchemy_exc

from shadowd.ports import StoreRefused, StoreUnavailable

# SQLSTATE classes (PostgreSQL appendix A) that describe the rows sent, not the server's state:
# 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (an index row too big).
_REFUSED_CLASSES = frozenset({"22", "23", "54"})
# Classes that say the server cannot work just now: 08 connection, 40 rollback (serialization, deadlock),
# 53 insufficient resources, 55 lock not available, 57 operator intervention (shutdown), 58 system error.
_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58", "XX"})
_CONDITIONS = {
    "22001": "string_too_long",
    "22003": "number_out_of_range",
    "22007": "invalid_datetime",
    "22008": "datetime_out_of_range",
    "22021": "character_not_in_repertoire",
    "22P02": "invalid_text_representation",
    "22P05": "untranslatable_character",
    "23502": "not_null_violation",
    "23505": "unique_violation",
    "54000": "value_too_large",
}


def classify_store_error(exc: BaseException) -> BaseException:
    """StoreRefused for errors about the rows, StoreUnavailable for errors about the server, else `exc`.

    The cause chain is read, so a driver error wrapped by SQLAlchemy is seen for what it is. Errors raised
    while converting a parameter (a lone surrogate, a year-0 timestamp) never reached the server: they
    are the rows' own and fail the same way every time.
    """
    if isinstance(exc, StoreRefused | StoreUnavailable):
        return exc
    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    causes = _causes(exc)
    for cause in causes:  # the server's own word first
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(state, str) and len(state) == 5 and state != "22000":  # 22000: asyncpg's own, below
            if state[:2] in _REFUSED_CLASSES:
                return StoreRefused(_CONDITIONS.get(state, f"sqlstate_{state}"), message)
            if state[:2] in _UNAVAILABLE_CLASSES:
                return StoreUnavailable(message)
    for cause in causes:  # then what went wrong before anything was sent
        if isinstance(cause, UnicodeError):
            return StoreRefused("invalid_unicode", message)
        if isinstance(cause, OverflowError):
            return StoreRefused("out_of_range", message)
        if isinstance(cause, ValueError | TypeError | sqlalchemy_exc.DataError | sqlalchemy_exc.IntegrityError):
            return StoreRefused("unconvertible_value", message)
    for cause in causes:
        if isinstance(
            cause,
            OSError | ConnectionError | TimeoutError | sqlalchemy_exc.DisconnectionError
            | sqlalchemy_exc.OperationalError | sqlalchemy_exc.InterfaceError | sqlalchemy_exc.TimeoutError,
        ):
            return StoreUnavailable(message)
        if isinstance(cause, sqlalchemy_exc.DBAPIError) and cause.connection_invalidated:
            return StoreUnavailable(message)
    return exc


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) and orig not in chain else (
            current.__cause__ or current.__context__
        )
    return chain


def read_error_kind(exc: BaseException) -> str | None:
    """What a failed read means for its caller: "refused" (a parameter the database cannot use: the
    caller's fault), "unavailable" (the database cannot answer now), or None (a bug)."""
    if isinstance(exc, StoreRefused):
        return "refused"
    if isinstance(exc, StoreUnavailable | OSError):
        return "unavailable"
    if isinstance(exc, sqlalchemy_exc.DataError) or (
        isinstance(exc, sqlalchemy_exc.StatementError) and isinstance(exc.orig, ValueError | OverflowError | UnicodeError)
    ):
        return "refused"
    if isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        return "unavailable"
    return None


def database_failure(exc: BaseException) -> tuple[str, str] | None:
    """For the CLI's exit codes: ("url", why) for a database URL SQLAlchemy cannot use, ("unreachable", why)
    for a database that cannot be reached (the driver's own error named), None for anything else."""
    if isinstance(exc, sqlalchemy_exc.ArgumentError):
        return "url", f"bad database URL: {_first_line(exc)}"
    if isinstance(exc, sqlalchemy_exc.DBAPIError | OSError | TimeoutError | ConnectionError):
        cause: BaseException = (
            exc.orig if isinstance(exc, sqlalchemy_exc.DBAPIError) and exc.orig is not None else exc
        )
        return "unreachable", f"database unreachable: {type(cause).__name__}: {_first_line(cause)}"
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]
