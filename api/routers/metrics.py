"""GET /metrics (no /api/v1 prefix, no auth): Prometheus text exposition of the gateway.

It carries no secrets, but job counts per workflow are operational detail: expose the port to
the scraper on a private network (or block /metrics at the ingress), not to the internet.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from api.deps import EngineDep
from api.metrics import CONTENT_TYPE, MetricsRegistry, stuck_runs_of

router = APIRouter(tags=["metrics"])

EXAMPLE = """# HELP llmflow_jobs Jobs in the mirror database by status and workflow.
# TYPE llmflow_jobs gauge
llmflow_jobs{status="completed",workflow_name="quickstart"} 12
# HELP llmflow_mirror_up 1 when the mirror database answered this scrape within the timeout, else 0.
# TYPE llmflow_mirror_up gauge
llmflow_mirror_up 1
"""


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"example": EXAMPLE}}}},
)
async def metrics(request: Request, engine: EngineDep) -> Response:
    """Prometheus metrics (text format 0.0.4). **Unauthenticated**: scrape it on a private network.

    Always 200: when the mirror database fails or takes over 3 s, the database-backed gauges
    (`llmflow_jobs`, `llmflow_alerts`) are left out and `llmflow_mirror_up` is 0. Those gauges
    are counted at most every 15 s, however often this is scraped.
    """
    # (The docstring above is the OpenAPI description, committed in clients/openapi.json.
    # `llmflow_jobs_waiting` is database-backed too, and left out with the others.)
    app = request.app
    registry: MetricsRegistry | None = getattr(app.state, "metrics", None)
    if registry is None:  # metrics middleware not installed: no requests counted
        registry = app.state.metrics = MetricsRegistry(
            version=app.version, stuck_runs=lambda: stuck_runs_of(app)
        )
    await registry.read_mirror(engine)
    return Response(content=registry.render(), media_type=CONTENT_TYPE)
