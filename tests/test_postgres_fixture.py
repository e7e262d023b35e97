"""The throwaway PostgreSQL (tests/pg.py) that the PostgreSQL store and the active/standby tests run on."""

from __future__ import annotations

import os

import psycopg

from tests.pg import URL_ENV


async def test_postgres_url_is_a_working_database(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as conn:
        # Rolled back at the end: nothing is left behind in a database given by ALERTD_TEST_POSTGRES_URL.
        async with conn.transaction(force_rollback=True):
            await conn.execute("CREATE TABLE fixture_check (id integer PRIMARY KEY, name text NOT NULL)")
            await conn.execute("INSERT INTO fixture_check VALUES (%s, %s)", (1, "河口村"))
            cur = await conn.execute("SELECT id, name FROM fixture_check")
            assert await cur.fetchall() == [(1, "河口村")]
        if not os.environ.get(URL_ENV):  # our own cluster: a test one, without fsync
            cur = await conn.execute("SHOW fsync")
            assert await cur.fetchone() == ("off",)
