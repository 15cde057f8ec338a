"""A catalog on a live PostgreSQL server reached with a password (in the URL's user info or
its query): the password is in no output, log line or stored row."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
import sqlalchemy
from pg_server import fresh_database

from matscreen.flows.cli import main


@pytest.mark.parametrize("where", ["user info", "query"])
def test_a_catalog_password_lands_nowhere(
    postgres_url: str,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    url = fresh_database(postgres_url)  # the test server trusts loopback: any password works
    password = "pw-" + secrets.token_hex(12)
    with_password = (
        url.replace("://matscreen@", f"://matscreen:{password}@")
        if where == "user info"
        else f"{url}?password={password}&connect_timeout=10"
    )
    assert password in with_password
    monkeypatch.setenv("MATSCREEN_CATALOG_URL", with_password)
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    source = data_dir / "materials_project" / "summary_200.jsonl"
    with caplog.at_level(logging.DEBUG):
        assert (
            main(["ingest", "files", str(source), "--licence", "CC-BY-4.0", "--citation", "MP",
                  "--limit", "20", "--quiet"])
            == 0
        )  # fmt: skip
        assert main(["find", "runs"]) == 0
        assert main(["verify"]) == 0
    printed = capsys.readouterr()
    assert "***" in printed.out  # the catalog URL is shown, masked
    assert password not in printed.out + printed.err
    assert password not in caplog.text

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tables = [row[0] for row in conn.execute(sqlalchemy.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]  # fmt: skip
            assert "entities" in tables
            for table in tables:
                for row in conn.execute(sqlalchemy.text(f"SELECT * FROM {table}")):
                    assert password not in " ".join(map(str, row)), table
    finally:
        engine.dispose()
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
