"""Run the real gateway (uvicorn + lifespan) inside the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy.engine import Engine
from temporalio.client import Client

from api.main import create_app
from core.settings import Settings


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings, *, engine: Engine | None = None, temporal_client: Client | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, temporal_client=temporal_client)
    async with serve(app) as client:
        yield client


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # surface a startup error
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task
