"""GET /api/v1/alerts and /api/v1/alerts/summary against rows in the mirror database.

The database is shared by the whole session (and may be Postgres): each test writes alerts
under its own `source` and filters by it, so other tests' rows never change what it sees.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.main import create_app
from core.db import insert_alert
from core.models import Alert
from core.settings import Settings
from tests.api_server import serve

T0 = datetime(2021, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def build_app(settings: Settings, engine: Engine, temporal_client: Client) -> FastAPI:
    return create_app(settings, engine=engine, temporal_client=temporal_client)


def new_source() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def add(
    engine: Engine, source: str, level: str, at: datetime, *, job_id: str | None = None
) -> None:
    insert_alert(
        engine,
        Alert(
            level=level,
            source=source,
            message=f"{level} at {at.isoformat()}",
            job_id=job_id,
            details={"at": at.isoformat(), "n": [1, 2]},
            created_at=at,
        ),
    )


async def test_list_filters_by_level_threshold_source_job_and_since(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    src, other, job_a = new_source(), new_source(), new_source()
    times = [T0 + timedelta(minutes=i) for i in range(5)]
    add(engine, src, "INFO", times[0])
    add(engine, src, "WARNING", times[1])
    add(engine, src, "ERROR", times[2], job_id=job_a)
    add(engine, src, "CRITICAL", times[3])
    add(engine, src, "ERROR", times[4], job_id="job-b")
    add(engine, other, "CRITICAL", times[4])

    async with serve(build_app(settings, engine, temporal_client)) as api:

        async def levels(**params: str) -> list[str]:
            resp = await api.get("/api/v1/alerts", params={"source": src, **params})
            assert resp.status_code == 200, resp.text
            return [a["level"] for a in resp.json()["items"]]

        everything = (await api.get("/api/v1/alerts", params={"source": src})).json()
        assert await levels() == ["ERROR", "CRITICAL", "ERROR", "WARNING", "INFO"]
        assert await levels(level="INFO") == ["ERROR", "CRITICAL", "ERROR", "WARNING", "INFO"]
        assert await levels(level="WARNING") == ["ERROR", "CRITICAL", "ERROR", "WARNING"]
        assert await levels(level="ERROR") == ["ERROR", "CRITICAL", "ERROR"]
        assert await levels(level="CRITICAL") == ["CRITICAL"]
        by_job = (await api.get("/api/v1/alerts", params={"job_id": job_a})).json()["items"]
        assert await levels(since=times[2].isoformat()) == ["ERROR", "CRITICAL", "ERROR"]
        # The same instant written in another zone selects the same rows.
        plus_two = times[3].astimezone(timezone(timedelta(hours=2))).isoformat()
        assert await levels(since=plus_two) == ["ERROR", "CRITICAL"]
        lower = await api.get("/api/v1/alerts", params={"level": "error"})
        unknown = await api.get("/api/v1/alerts", params={"level": "FATAL"})
        bad_since = await api.get("/api/v1/alerts", params={"since": "yesterday"})

    assert everything["next_cursor"] is None
    newest = everything["items"][0]
    assert set(newest) == {"id", "level", "source", "message", "job_id", "details", "created_at"}
    assert newest["source"] == src and newest["job_id"] == "job-b"
    assert newest["details"] == {"at": times[4].isoformat(), "n": [1, 2]}
    assert datetime.fromisoformat(newest["created_at"].replace("Z", "+00:00")) == times[4]
    assert [(a["source"], a["level"]) for a in by_job] == [(src, "ERROR")]
    assert lower.status_code == 422 and unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["query", "level"]
    assert bad_since.status_code == 422


async def test_pages_newest_first_with_a_stable_keyset_cursor(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    src = new_source()
    # Ties on created_at are ordered by id, so no row is skipped or repeated across pages.
    stamps = [T0, T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=1), T0, T0]
    stamps += [T0 + timedelta(seconds=2)]
    for i, at in enumerate(stamps):
        add(engine, src, ["INFO", "ERROR"][i % 2], at)

    async with serve(build_app(settings, engine, temporal_client)) as api:
        pages: list[dict] = []
        cursor = None
        for _ in range(5):
            params: dict[str, str | int] = {"source": src, "limit": 3}
            if cursor:
                params["cursor"] = cursor
            resp = await api.get("/api/v1/alerts", params=params)
            assert resp.status_code == 200, resp.text
            pages.append(resp.json())
            cursor = pages[-1]["next_cursor"]
            if cursor is None:
                break
            if len(pages) == 1:
                add(engine, src, "CRITICAL", T0 + timedelta(hours=1))  # newer: not on later pages
        errors_only = (
            await api.get("/api/v1/alerts", params={"source": src, "level": "ERROR", "limit": 2})
        ).json()
        bad_cursor = await api.get("/api/v1/alerts", params={"cursor": "garbage"})
        too_many = await api.get("/api/v1/alerts", params={"limit": 201})

    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    listed = [(a["created_at"], a["id"]) for p in pages for a in p["items"]]
    assert len(set(listed)) == 7
    assert listed == sorted(listed, reverse=True)
    assert all(a["level"] != "CRITICAL" for p in pages for a in p["items"])
    assert [a["level"] for a in errors_only["items"]] == ["CRITICAL", "ERROR"]  # and above
    assert errors_only["next_cursor"] is not None
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["detail"][0]["loc"] == ["query", "cursor"]
    assert too_many.status_code == 422


async def test_summary_counts_levels_sources_and_the_latest(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    src, other = new_source(), new_source()
    add(engine, src, "ERROR", T0)
    add(engine, src, "ERROR", T0 + timedelta(minutes=1))
    add(engine, src, "WARNING", T0 + timedelta(minutes=2), job_id="job-latest")
    add(engine, other, "CRITICAL", T0)

    async with serve(build_app(settings, engine, temporal_client)) as api:
        mine = (await api.get("/api/v1/alerts/summary", params={"source": src})).json()
        recent = (
            await api.get(
                "/api/v1/alerts/summary",
                params={"source": src, "since": (T0 + timedelta(minutes=1)).isoformat()},
            )
        ).json()
        overall = (await api.get("/api/v1/alerts/summary")).json()
        nothing = (await api.get("/api/v1/alerts/summary", params={"source": new_source()})).json()
        bad = await api.get("/api/v1/alerts/summary", params={"since": "not-a-time"})

    assert mine["total"] == 3
    assert mine["by_level"] == {"INFO": 0, "WARNING": 1, "ERROR": 2, "CRITICAL": 0}
    assert mine["by_source"] == {src: 3}
    assert mine["latest"]["job_id"] == "job-latest" and mine["latest"]["level"] == "WARNING"
    assert recent["total"] == 2 and recent["by_level"]["ERROR"] == 1
    assert overall["by_source"][src] == 3 and overall["by_source"][other] == 1
    assert overall["total"] == sum(overall["by_level"].values()) >= 4
    assert overall["total"] == sum(overall["by_source"].values())
    assert overall["latest"] is not None
    assert nothing == {
        "total": 0,
        "by_level": {"INFO": 0, "WARNING": 0, "ERROR": 0, "CRITICAL": 0},
        "by_source": {},
        "latest": None,
    }
    assert bad.status_code == 422


async def test_alert_routes_require_the_api_key_when_set(
    settings: Settings, engine: Engine, temporal_client: Client
) -> None:
    keyed = settings.model_copy(update={"api_keys": ["alerts-key-123456"]})
    src = new_source()
    add(engine, src, "ERROR", T0)
    good = {"Authorization": "Bearer alerts-key-123456"}
    async with serve(build_app(keyed, engine, temporal_client)) as api:
        anonymous = [
            await api.get("/api/v1/alerts"),
            await api.get("/api/v1/alerts/summary"),
        ]
        wrong = await api.get("/api/v1/alerts", headers={"Authorization": "Bearer nope"})
        listed = await api.get("/api/v1/alerts", params={"source": src}, headers=good)
        summary = await api.get(
            "/api/v1/alerts/summary",
            params={"source": src},
            headers={"X-API-Secret": "alerts-key-123456"},
        )
    assert [r.status_code for r in anonymous] == [401, 401] and wrong.status_code == 401
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1
    assert summary.status_code == 200 and summary.json()["total"] == 1
