"""The lease in a real PostgreSQL (alertd/lease_table.py): one holder at a time, a new token at each takeover,
and a deposed active's transactions refused by the fence, even one that was waiting when the takeover came."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from alertd.core.lease import Move, move
from alertd.lease_table import Deposed, LeaseTable

TTL_S = 0.4


@pytest.fixture
async def lease(postgres_url: str) -> AsyncIterator[tuple[LeaseTable, str]]:
    table = LeaseTable(f"lease_{uuid.uuid4().hex[:8]}")  # one per test: the cluster is shared by the session
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await table.setup(conn)
        yield table, postgres_url
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table.table)))


async def connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def test_one_holder_at_a_time_and_a_new_token_at_each_takeover(lease: tuple[LeaseTable, str]) -> None:
    table, url = lease
    async with await connect(url) as a, await connect(url) as b:
        first = await table.take(a, "a", TTL_S)
        assert first is not None
        assert (first.holder, first.token) == ("a", 1)
        assert first.expires_at > first.db_now
        assert await table.take(b, "b", TTL_S) is None, "a holds it"
        assert move(await table.read(b), "b") == Move.WAIT
        renewed = await table.renew(a, "a", 1, TTL_S)
        assert renewed is not None
        assert renewed.token == 1
        await asyncio.sleep(TTL_S + 0.1)  # a stops renewing (it hangs, or died)
        assert move(await table.read(b), "b") == Move.TAKE
        second = await table.take(b, "b", TTL_S)
        assert second is not None
        assert (second.holder, second.token) == ("b", 2)
        assert await table.renew(a, "a", 1, TTL_S) is None, "a was deposed: its renewal matches nothing"


async def test_only_one_of_many_contenders_wins(lease: tuple[LeaseTable, str]) -> None:
    table, url = lease
    conns = [await connect(url) for _ in range(5)]
    try:
        won = await asyncio.gather(*(table.take(c, f"i{n}", TTL_S) for n, c in enumerate(conns)))
    finally:
        for conn in conns:
            await conn.close()
    assert len([w for w in won if w is not None]) == 1


async def test_the_fence_refuses_a_deposed_actives_transaction(lease: tuple[LeaseTable, str]) -> None:
    table, url = lease
    work = sql.Identifier(f"{table.table}_work")

    async def fenced_write(conn: psycopg.AsyncConnection[Any], me: str, token: int, n: int) -> None:
        async with conn.transaction():
            await table.fence(conn, me, token)
            await conn.execute(sql.SQL("INSERT INTO {} VALUES (%s)").format(work), (n,))

    async with await connect(url) as a, await connect(url) as b:
        await a.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (n integer)").format(work))
        assert await table.take(a, "a", TTL_S) is not None
        await fenced_write(a, "a", 1, 1)  # ours: the write goes through
        await asyncio.sleep(TTL_S + 0.1)
        assert await table.take(b, "b", TTL_S) is not None
        with pytest.raises(Deposed, match="token 1"):
            await fenced_write(a, "a", 1, 2)
        cur = await b.execute(sql.SQL("SELECT n FROM {} ORDER BY n").format(work))
        assert await cur.fetchall() == [(1,)], "nothing of the deposed active was written"
        await b.execute(sql.SQL("DROP TABLE {}").format(work))


async def test_a_takeover_waits_for_the_actives_transaction_in_flight(lease: tuple[LeaseTable, str]) -> None:
    # The fence holds the row FOR SHARE until the commit: a takeover cannot slip in between the check and the
    # write of a commit that began while the lease was valid.
    table, url = lease
    async with await connect(url) as a, await connect(url) as b:
        assert await table.take(a, "a", TTL_S) is not None
        async with a.transaction():
            await table.fence(a, "a", 1)
            await asyncio.sleep(TTL_S + 0.1)  # the lease runs out while this commit is under way
            taking = asyncio.create_task(table.take(b, "b", TTL_S))
            await asyncio.sleep(0.2)
            assert not taking.done(), "the takeover waits for the commit in flight"
        taken = await asyncio.wait_for(taking, 5)
        assert taken is not None
        assert taken.token == 2
