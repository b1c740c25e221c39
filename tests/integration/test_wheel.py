"""`shadowd db upgrade` from an installed wheel, away from the checkout, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def installed_shadowd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the built wheel (dependencies come from the system site-packages)."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(ROOT)], check=True)
    wheel = next(folder.glob("shadowd-*.whl"))
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The dependencies come from the test run's own environment: its site-packages joins the new venv's
    # path through a .pth line, which adds the folder without running its .pth files, so the checkout's
    # editable install stays out and only the wheel's shadowd can be imported.
    new_site = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (new_site / "shadowd-test-deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(wheel)], check=True)
    return venv / "bin" / "shadowd"


def _upgrade(shadowd: Path, db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -I keeps the checkout off sys.path, so only the wheel's files can be used.
    python = shadowd.parent / "python"
    return subprocess.run([str(python), "-I", "-m", "shadowd", "db", "upgrade", "--db", db_url, "--json"],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


def test_wheel_upgrades_sqlite(installed_shadowd: Path, tmp_path: Path) -> None:
    """The wheel carries its migrations: upgrade works with no checkout in sight."""
    result = _upgrade(installed_shadowd, f"sqlite:///{tmp_path / 'w.db'}", tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"upgraded_to": "head"' in result.stdout


async def test_wheel_upgrades_postgresql(installed_shadowd: Path, tmp_path: Path, fresh_database_url: str) -> None:
    """The same wheel migrates a PostgreSQL database, twice without harm."""
    for _ in range(2):
        result = _upgrade(installed_shadowd, fresh_database_url, tmp_path)
        assert result.returncode == 0, result.stderr
    import asyncpg

    from tests.integration.conftest import _asyncpg_dsn

    connection = await asyncpg.connect(_asyncpg_dsn(fresh_database_url))
    try:
        tables = {r["tablename"] for r in await connection.fetch("select tablename from pg_tables where schemaname='public'")}
        version = await connection.fetchval("select version_num from alembic_version")
    finally:
        await connection.close()
    assert {"verdicts", "findings", "dead_letters", "rollouts", "decisions"} <= tables
    from alembic.script import ScriptDirectory

    assert version == ScriptDirectory(str(ROOT / "migrations")).get_current_head()
