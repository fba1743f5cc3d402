"""`python -m bench.handwritten_worker`: the hand-written baseline's worker, in its own process.

The counterpart of `llmflow worker` for bench/end_to_end.py: `HandwrittenWorkflow` and the
real `llm_call` activity on the task queue TEMPORAL_TASK_QUEUE, configured from the environment
like the product worker, with the same sandbox runner and default worker options. It runs
until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

from temporalio.worker import Worker

from activities.http_errors import new_http_client
from activities.llm.activity import LlmActivities
from bench.handwritten_workflow import HandwrittenWorkflow
from core.logging import setup_logging
from core.settings import Settings
from core.temporal import connect
from worker.app import sandbox_runner


async def main() -> None:
    settings = Settings()
    setup_logging(settings.log_level)
    client = await connect(settings, attempts=30)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http = new_http_client()
    try:
        async with Worker(
            client,
            task_queue=settings.temporal_task_queue,
            workflows=[HandwrittenWorkflow],
            activities=[LlmActivities(settings, http).llm_call],
            workflow_runner=sandbox_runner(),
        ):
            await stop.wait()
    finally:
        await http.aclose()


if __name__ == "__main__":
    asyncio.run(main())
