"""Every log line goes through the redactor: uvicorn's access log (which writes the request's query
string), its error log, the root logger and library loggers, tracebacks included, whichever
handler writes them and whenever that handler was added."""

from __future__ import annotations

import asyncio
import io
import logging
import logging.config
from collections.abc import Iterator
from copy import deepcopy

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine
from temporalio.client import Client
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter

from api.main import create_app
from core.logging import UVICORN_LOGGERS, RedactingFilter, setup_logging
from core.redaction import REDACTED
from core.settings import Settings

GATEWAY_KEY = "gw-client-key-Jx83Kq20Lm"
UNCONFIGURED = "0f9e8d7c6b5a4f3e2d1c"  # a value only its parameter name gives away


@pytest.fixture
def logging_state() -> Iterator[None]:
    """setup_logging and uvicorn reconfigure process-wide logging; put it back for other tests."""
    names = ["", "httpx", *UVICORN_LOGGERS]
    saved = {}
    for name in names:
        lg = logging.getLogger(name)
        saved[name] = (lg.handlers[:], lg.filters[:], lg.level, lg.propagate)
    # Start from a process that has not run uvicorn yet: its config stops "uvicorn" records at
    # its own handlers (propagate False), which earlier tests leave behind.
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).propagate = True
    factory = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)
        for name, (handlers, filters, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:], lg.filters[:] = handlers, filters
            lg.setLevel(level)
            lg.propagate = propagate


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text and secret.lower() not in text.lower(), text


async def test_gateway_access_log_redacts_query_secrets(
    logging_state: None,
    settings: Settings,
    engine: Engine,
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As `llmflow api` runs it: uvicorn configures its loggers, then builds the app through a
    factory that sets up logging (api.main.app_from_env)."""
    monkeypatch.setenv("API_KEYS", GATEWAY_KEY)
    keyed = settings.model_copy(update={"api_keys": [GATEWAY_KEY]})

    def factory() -> object:
        setup_logging("INFO")
        return create_app(keyed, engine=engine, temporal_client=temporal_client)

    config = uvicorn.Config(
        factory,
        factory=True,
        host="127.0.0.1",
        port=0,
        log_level="info",
        lifespan="on",
        log_config=deepcopy(LOGGING_CONFIG),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    written = io.StringIO()
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        # What uvicorn's own access handler writes (its stdout stream, swapped for a buffer).
        [access_handler] = logging.getLogger("uvicorn.access").handlers
        assert isinstance(access_handler, logging.StreamHandler)
        access_handler.setStream(written)
        late = Capture()  # a handler added after logging was set up sees clean records too
        logging.getLogger("uvicorn.access").addHandler(late)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as api:
            ok = await api.get(
                f"/api/v1/jobs?api_key={GATEWAY_KEY}&limit=5", headers={"X-API-Secret": GATEWAY_KEY}
            )
            bad = await api.get(f"/api/v1/jobs?limit=2&token={UNCONFIGURED}")
            shouted = await api.get(f"/api/v1/jobs?x={GATEWAY_KEY.upper()[:-2]}")
    finally:
        server.should_exit = True
        await task
    assert ok.status_code == 200 and bad.status_code == shouted.status_code == 401
    out = written.getvalue()
    assert out.count('"GET /api/v1/jobs?') == 3, out
    _assert_clean(out, GATEWAY_KEY, GATEWAY_KEY.upper()[:-2], UNCONFIGURED)
    assert f"api_key={REDACTED}&limit=5" in out and f"limit=2&token={REDACTED}" in out
    assert " 200" in out and " 401" in out  # uvicorn's own format still renders
    _assert_clean("\n".join(late.lines), GATEWAY_KEY, UNCONFIGURED)
    assert len(late.records) == 3


def test_access_record_keeps_uvicorn_format() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        (
            "127.0.0.1:5000",
            "GET",
            f"/x?q=1&password={UNCONFIGURED}&key=sk-abcdefghijkl",
            "1.1",
            200,
        ),
        None,
    )
    assert RedactingFilter().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert (
        line == f'127.0.0.1:5000 - "GET /x?q=1&password={REDACTED}&key={REDACTED} HTTP/1.1" 200 OK'
    )


def test_root_library_and_late_handlers_see_redacted_records(
    logging_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "Wx7-pQ9zRv-k19Hh42"
    monkeypatch.setenv("OPENROUTER_API_KEY", secret)
    setup_logging("DEBUG")
    written = io.StringIO()
    [ours] = logging.getLogger().handlers
    assert isinstance(ours, logging.StreamHandler)
    ours.setStream(written)
    late = Capture()
    logging.getLogger().addHandler(late)  # e.g. an integration added after start
    try:
        # The worker's loggers (temporalio, activities) and the gateway's go through the root.
        logging.getLogger("temporalio.activity").warning("upstream echoed %s", secret.upper())
        logging.getLogger("activities.external_api").info(
            "GET %s", f"https://maps.test/json?q=Paris&key={UNCONFIGURED}"
        )
        logging.getLogger("api.inbound_service").info("key=%s", UNCONFIGURED)  # split across args
        try:
            raise RuntimeError(f"provider said: invalid key {secret[::-1]}")
        except RuntimeError:
            logging.getLogger("worker").exception("step failed")
        logging.getLogger("uvicorn.error").error("header Authorization: Bearer %s", secret)
    finally:
        logging.getLogger().removeHandler(late)
    for text in (written.getvalue(), "\n".join(late.lines)):
        _assert_clean(text, secret, secret[::-1], UNCONFIGURED)
        assert "upstream echoed [REDACTED]" in text
        assert f"q=Paris&key={REDACTED}" in text
        assert "RuntimeError: provider said: invalid key [REDACTED]" in text
        assert "Traceback" in text
    assert len(late.records) == 5


def test_uvicorn_reconfiguring_after_setup_still_redacts(logging_state: None) -> None:
    setup_logging("INFO")
    # uvicorn.Config replaces its loggers' handlers when it starts after us (as in tests).
    logging.config.dictConfig(deepcopy(LOGGING_CONFIG))
    late = Capture()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(late)
    access.info(
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4:1", "GET", f"/j?secret={UNCONFIGURED}", "1.1", 401
    )
    [record] = late.records
    assert record.args == ("1.2.3.4:1", "GET", f"/j?secret={REDACTED}", "1.1", 401)


def test_bad_format_arguments_are_withheld_not_written(logging_state: None) -> None:
    setup_logging("INFO")
    late = Capture()
    logging.getLogger().addHandler(late)
    try:
        logging.getLogger("x").info("count %d", f"token={UNCONFIGURED}")
    finally:
        logging.getLogger().removeHandler(late)
    assert UNCONFIGURED not in "".join(late.lines)
    assert "count %d [arguments withheld: bad format]" in late.lines[0]


def test_setup_logging_twice_installs_one_filter(logging_state: None) -> None:
    setup_logging("INFO")
    factory = logging.getLogRecordFactory()
    setup_logging("INFO")
    assert logging.getLogRecordFactory() is factory
    for name in ("", *UVICORN_LOGGERS):
        lg = logging.getLogger(name)
        for target in (lg, *lg.handlers):
            assert sum(isinstance(f, RedactingFilter) for f in target.filters) == 1
