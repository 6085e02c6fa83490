"""The write-back statement (``webhooks.store.write``) on a real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from livedata.webhooks import store
from livedata.webhooks.models import Delivery, Subscription
from livedata.webhooks.state import Attempt
from livedata.webhooks.transport import Result
from tests.webhooks.conftest import subscribe


def test_the_delivery_log_keeps_the_order_of_the_attempts(svc, db_params: dict[str, Any]):
    """Ids follow the attempts' order whatever plan PostgreSQL picks: with more
    subscriptions than attempts, 15 and 18 both hash the attempts for the EXISTS and
    returned a subscription's rows of one write in reverse (CI saw a retry logged after
    the next change's first attempt). Fails without the statement's ORDER BY."""
    subscribe(svc, "books", "https://hooks.example.com/in")
    sub_id = Subscription.objects.get().pk
    start = datetime.now(UTC)
    answers = [(500, "failed"), (502, "failed"), (200, "delivered")]
    attempts = [
        Attempt(sub_id, "w-1", "p", 1, n, Result(outcome, status, "", "", 1.0), start)
        for n, (status, outcome) in enumerate(answers, 1)
    ]
    attempts.append(Attempt(sub_id, "w-2", "p", 1, 1, Result("delivered", 200, "", "", 1.0), start))
    for i, a in enumerate(attempts):
        a.at = start + timedelta(milliseconds=i)

    async def write() -> None:
        async with await psycopg.AsyncConnection.connect(**db_params, autocommit=True) as conn:
            # many subscriptions (as a real site may have): the planner then hashes the
            # attempts, the smaller side, which is the plan that reordered them
            columns = [
                r[0]
                for r in await (
                    await conn.execute(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_name = %s AND column_name NOT IN ('id', 'name')",
                        [store.SUB_TABLE],
                    )
                ).fetchall()
            ]
            listed = ", ".join(columns)
            await conn.execute(
                f"INSERT INTO {store.SUB_TABLE} (name, {listed}) SELECT name || g, {listed}"
                f" FROM {store.SUB_TABLE}, generate_series(1, 2000) g"
            )
            await conn.execute(f"ANALYZE {store.SUB_TABLE}")
            await store.write(conn, [], attempts, "test")

    asyncio.run(write())
    logged = list(Delivery.objects.order_by("id").values_list("webhook_id", "attempt"))
    assert logged == [("w-1", 1), ("w-1", 2), ("w-1", 3), ("w-2", 1)]
