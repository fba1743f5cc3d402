"""FastAPI dependencies: the clients built in the lifespan, as Annotated aliases.

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
thread hop per dependency per request for what is an attribute read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from api.temporal_link import TemporalLink
from core.settings import Settings
from workflow_defs.catalog import Catalog


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


async def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog  # type: ignore[no-any-return]


async def get_temporal(request: Request) -> TemporalLink:
    return request.app.state.temporal  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
TemporalDep = Annotated[TemporalLink, Depends(get_temporal)]
