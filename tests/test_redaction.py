"""The one redactor and the ErrorContext ↔ Temporal failure mapping."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from core.errors import ErrorCategory, ErrorContext, ErrorType
from core.redaction import MAX_VALUE_CHARS, REDACTED, is_secret_name, redact, redact_text
from tests.growth import MAX_GROWTH, SCALE, growth

ENV_SECRET = "PlainLookingValue9876"  # matches no secret-shaped pattern: only env lookup finds it


# --- by field name -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "X-Api-Key",
        "x-goog-api-key",
        "apiKey",
        "APIKEY",
        "Authorization",
        "password",
        "webhook_secret",
        "client_secret",
        "token",
        "access_token",
        "refreshToken",
        "Cookie",
        "signature",
        "private_key",
        "credentials",
    ],
)
def test_secret_names_are_redacted(name: str) -> None:
    assert is_secret_name(name)
    assert redact({name: "value-1", "q": "London"}) == {name: REDACTED, "q": "London"}


@pytest.mark.parametrize(
    "name",
    [
        "max_tokens",
        "total_tokens",
        "input_tokens",
        "tokens",
        "keyword",
        "keywords",
        "author",
        "idempotency_key",
        "cache_key",
        "monkey",
        "keys",
        "secret_ref",
        "public_key",
    ],
)
def test_harmless_names_are_kept(name: str) -> None:
    assert not is_secret_name(name)
    assert redact({name: 42}) == {name: 42}
    assert redact({name: "plain"}) == {name: "plain"}


def test_empty_secret_fields_stay_empty() -> None:
    # Nothing to hide; showing that a key is *absent* helps debugging.
    assert redact({"api_key": None, "token": "", "password": False}) == {
        "api_key": None,
        "token": "",
        "password": False,
    }


def test_secret_named_field_with_structured_value_is_redacted_whole() -> None:
    assert redact({"auth": {"user": "u", "pass": "p"}}) == {"auth": REDACTED}


# --- by value shape ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("header was bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("key sk-abcdefghijkl123 rejected", "sk-abcdefghijkl123"),
        ("sk-or-v1-0123456789abcdef", "0123456789abcdef"),
        ("stripe sk_live_ABCDEFGH1234", "sk_live_ABCDEFGH1234"),
        ("google AIzaSyA1234567890abcdefghijk", "AIzaSyA1234567890abcdefghijk"),
        ("signing whsec_abcdefghijk", "whsec_abcdefghijk"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz", "ghp_abcdefghijklmnopqrstuvwxyz"),
        ("https://api.example.com/v1?key=abc123&q=London", "abc123"),
        ("https://api.example.com/v1?q=London&api_key=abc123", "abc123"),
        ("GET /x?apikey=zz99&lang=fr", "zz99"),
        ("retry with access_token=tok123 later", "tok123"),
        ("'password=hunter22'", "hunter22"),
    ],
)
def test_secret_shaped_values_are_redacted(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert REDACTED in out


def test_url_keeps_its_harmless_parts() -> None:
    out = redact_text("https://api.example.com/v1/current.json?key=abc123&q=London&aqi=no")
    assert out == f"https://api.example.com/v1/current.json?key={REDACTED}&q=London&aqi=no"


@pytest.mark.parametrize(
    "text",
    [
        "keyword=emergency",
        "max_tokens=500",
        "the task is done",
        "skill-based routing",  # 'sk' inside a word is not a key
        "bearer of bad news",  # too short to be a token
        "monkey business",
    ],
)
def test_harmless_text_is_unchanged(text: str) -> None:
    assert redact_text(text) == text


def test_env_var_secret_values_redacted_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    monkeypatch.setenv("API_KEYS", f"first-client-key, {ENV_SECRET}x2, ab")
    text = f"upstream said: invalid key {ENV_SECRET} (and first-client-key)"
    out = redact_text(text)
    assert ENV_SECRET not in out and "first-client-key" not in out
    nested = redact({"body": {"echo": [f"k={ENV_SECRET}", f"{ENV_SECRET}x2"]}, "note": ENV_SECRET})
    assert ENV_SECRET not in json.dumps(nested)
    # Values under 6 characters are too common to hunt for.
    assert redact_text("ab cd") == "ab cd"


def test_named_api_keys_hide_the_key_not_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # API_KEYS="name:key,…": the name identifies the caller in logs and job rows.
    monkeypatch.setenv("API_KEYS", "frontend-app:k3yValue-9Zx7Qw2, bare-key-Lp05Rt88")
    out = redact_text("frontend-app sent K3YVALUE-9ZX7QW2; bare-key-Lp05Rt88 too")
    assert out == f"frontend-app sent {REDACTED}; {REDACTED} too"


def test_payload_keys_are_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    current = "q8ZJvJ0mW1k2lJ8m3nB4vC5xZ6aS7dF8gH9jK0lP1oI="
    old = "Zm9vYmFyYmF6cXV4cXV1eHh5enp5MTIzNDU2Nzg5MDE="
    monkeypatch.setenv("LLMFLOW_PAYLOAD_KEY", current)
    monkeypatch.setenv("LLMFLOW_PAYLOAD_OLD_KEYS", f"2025-q4:{old}, {old[::-1]}")
    out = redact_text(f"key {current}; old 2025-q4 was {old}; and {old[::-1]}")
    assert out == f"key {REDACTED}; old 2025-q4 was {REDACTED}; and {REDACTED}"


def test_env_var_secret_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert redact_text(ENV_SECRET) == ENV_SECRET
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    assert redact_text(ENV_SECRET) == REDACTED


def test_extra_secrets() -> None:
    assert redact_text("a per-job s3cr3t-value here", extra_secrets=["s3cr3t-value"]) == (
        f"a per-job {REDACTED} here"
    )
    assert redact({"x": ["s3cr3t-value"]}, extra_secrets=["s3cr3t-value"]) == {"x": [REDACTED]}


# --- mangled echoes of configured secrets ---------------------------------------------------------

# Configured, and of no recognisable shape: only the configuration can give it away.
PROVIDER_KEY = "Q7rT2vX9mK-4pL8nW3bY6zA"


@pytest.fixture
def configured_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WEATHERAPI_API_KEY", PROVIDER_KEY)
    return PROVIDER_KEY


def _leaks(out: str, secret: str) -> list[str]:
    """Every 8-character piece of the secret (or its reverse) still in `out`, any case."""
    low = out.lower()
    pieces = [secret.lower(), secret.lower()[::-1]]
    return [p[i : i + 8] for p in pieces for i in range(len(p) - 7) if p[i : i + 8] in low]


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(PROVIDER_KEY.upper(), id="upper-cased"),
        pytest.param(PROVIDER_KEY.lower(), id="lower-cased"),
        pytest.param(PROVIDER_KEY[:-2], id="truncated-by-two"),
        pytest.param(PROVIDER_KEY[2:], id="first-two-dropped"),
        pytest.param(PROVIDER_KEY[::-1], id="reversed"),
        pytest.param(PROVIDER_KEY[::-1].upper(), id="reversed-upper-cased"),
        pytest.param(PROVIDER_KEY[8:16], id="an-8-char-fragment"),
        pytest.param(PROVIDER_KEY.swapcase()[5:], id="swapped-case-tail"),
    ],
)
def test_mangled_echo_of_a_configured_key_is_redacted(configured_key: str, echo: str) -> None:
    text = f'{{"error": {{"message": "Incorrect API key provided: {echo}. See docs."}}}}'
    out = redact_text(text, truncate=False)
    assert echo not in out and not _leaks(out, configured_key), out
    assert out == text.replace(echo, REDACTED)  # only the key goes; the sentence stays


def test_fragments_embedded_in_words_and_urls_are_redacted(configured_key: str) -> None:
    middle = configured_key[5:19]
    text = (
        f"retrying:{middle}:x|prefix{configured_key[:-2].upper()}suffix "
        f"https://api.test/v1/models/{configured_key[::-1]}/info?q=1"
    )
    out = redact_text(text, truncate=False)
    assert not _leaks(out, configured_key), out
    assert out.startswith("retrying:") and out.endswith("/info?q=1")
    assert "https://api.test/v1/models/" in out


def test_fragment_shorter_than_eight_characters_is_kept(configured_key: str) -> None:
    # Seven characters of a key are too little to hunt for without mangling ordinary text.
    seven = configured_key[9:16]
    assert redact_text(f"saw {seven} in the log") == f"saw {seven} in the log"


def test_mangled_extra_secret_is_redacted() -> None:
    secret = "per-job-s3cr3t-value-91"
    for echo in (secret.upper(), secret[:-2], secret[::-1]):
        assert redact_text(f"echo {echo}!", extra_secrets=[secret]) == f"echo {REDACTED}!"


def test_env_only_in_dotenv_is_redacted_once_settings_are_loaded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key in `.env` never reaches os.environ; the gateway and worker load it through
    Settings, and the redactor covers what they loaded."""
    from core.settings import get_settings

    key = "dotenv-only-key-5XcV7bN2"
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    (tmp_path / ".env").write_text(f"OPENROUTER_API_KEY={key}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    try:
        assert redact_text(f"echo {key.upper()}") == f"echo {key.upper()}"  # nothing loaded yet
        assert get_settings().openrouter_api_key == key
        assert redact_text(f"echo {key.upper()}") == f"echo {REDACTED}"
    finally:
        get_settings.cache_clear()


# --- key shapes nobody configured -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("provider said: sk-or-v1-9f8e7d6c5b4a39281706f5e4", "9f8e7d6c5b4a39281706f5e4"),
        ("OPENAI: INCORRECT KEY SK-PROJ-ABCDEF1234567890", "ABCDEF1234567890"),
        ("maps: AIzaSyB-1a2b3c4d5e6f7g8h9i0jKLMNOP rejected", "1a2b3c4d5e6f7g8h9i0j"),
        ("maps: AIZASYB-1A2B3C4D5E6F7G8H9I0JKLMNOP rejected", "1A2B3C4D5E6F7G8H9I0J"),
        ("sent Authorization: Bearer eyJ0eXAiOiJKV1QifQ.payload", "eyJ0eXAiOiJKV1QifQ"),
        ("sent authorization: BEARER abcdEFGH12345678", "abcdEFGH12345678"),
    ],
)
def test_unconfigured_key_shapes_are_redacted(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out and REDACTED in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /v1?client_secret=abc&x=1", f"GET /v1?client_secret={REDACTED}&x=1"),
        ("/blob?sv=2024&sig=Zm9vYmFy%3D&se=1", f"/blob?sv=2024&sig={REDACTED}&se=1"),
        ("X-Amz-Signature=deadbeef ok", f"X-Amz-Signature={REDACTED} ok"),
        ("refresh_token=r1&_token=t2", f"refresh_token={REDACTED}&_token={REDACTED}"),
        ('password="hunter2" user=ann', f'password="{REDACTED}" user=ann'),
        ("next=https://x.test/cb?apiKey=k1", f"next=https://x.test/cb?apiKey={REDACTED}"),
        ("max_tokens=5 keyword=x monkey=y", "max_tokens=5 keyword=x monkey=y"),
    ],
)
def test_secret_named_parameters_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


# --- cost -----------------------------------------------------------------------------------------


def test_a_megabyte_redacts_in_linear_time(configured_key: str) -> None:
    mb = 1_000_000
    texts = {
        "prose": ("the quick brown fox jumps over the lazy dog " * (mb // 44 + 1))[:mb],
        "one long word": "a" * mb,
        "key characters only": ("Q7rT2vX9" * (mb // 8 + 1))[:mb],
        "fragments everywhere": (f" {configured_key[3:14]} " * (mb // 13 + 1))[:mb],
        "the key repeated": (configured_key.upper() * (mb // len(configured_key) + 1))[:mb],
        "parameters": ("api_key=v&q=1&" * (mb // 14 + 1))[:mb],
        "bearer words": ("bearer " * (mb // 7 + 1))[:mb],
    }
    for name, text in texts.items():
        ratio = growth(lambda part: redact_text(part, truncate=False), text)
        assert ratio < MAX_GROWTH, f"{name}: {ratio:.1f}x the time for {SCALE}x the input"
        assert not _leaks(redact_text(text, truncate=False), configured_key), name


# --- truncation and structure --------------------------------------------------------------------


def test_long_values_truncated_to_200_chars() -> None:
    out = redact_text("x" * 300)
    assert out.startswith("x" * MAX_VALUE_CHARS)
    assert out[MAX_VALUE_CHARS:] == "…[truncated 100 chars]"
    assert MAX_VALUE_CHARS == 200
    assert redact_text("y" * 200) == "y" * 200
    assert redact_text("x" * 300, truncate=False) == "x" * 300


def test_secret_is_redacted_before_truncation() -> None:
    # A key straddling the cut must not leave a prefix behind.
    text = "x" * 190 + " sk-abcdefghijklmnop"
    assert "sk-abc" not in redact_text(text)


def test_nested_structures() -> None:
    value = {
        "request": {
            "headers": {"Authorization": "Bearer abcdefghijkl", "Accept": "json"},
            "params": [{"key": "abc", "q": "London"}, "https://x.test/?token=zzz123"],
        },
        "usage": {"total_tokens": 12, "max_tokens": 50},
        "items": ("sk-abcdefghijk", 3, None, True),
        "long": "z" * 500,
    }
    out = redact(value)
    assert out["request"]["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert out["request"]["params"][0] == {"key": REDACTED, "q": "London"}
    assert out["request"]["params"][1] == f"https://x.test/?token={REDACTED}"
    assert out["usage"] == {"total_tokens": 12, "max_tokens": 50}
    assert out["items"] == [REDACTED, 3, None, True]
    assert len(out["long"]) < 250
    assert value["request"]["headers"]["Authorization"] == "Bearer abcdefghijkl"  # not mutated


# --- ErrorContext ------------------------------------------------------------------------------


def test_error_context_defaults_by_type() -> None:
    assert ErrorContext.of(ErrorType.RATE_LIMITED, "x").retryable is True
    assert ErrorContext.of(ErrorType.UPSTREAM_ERROR, "x").retryable is True
    assert ErrorContext.of(ErrorType.UPSTREAM_REJECTED, "x").retryable is False
    assert ErrorContext.of(ErrorType.UPSTREAM_NOT_FOUND, "x").retryable is False
    assert ErrorContext.of(ErrorType.VALIDATION_ERROR, "x").retryable is False
    assert ErrorContext.of(ErrorType.CONFIG_ERROR, "x").category == ErrorCategory.CONFIG_ERROR
    assert ErrorContext.of(ErrorType.TIMEOUT, "x").category == ErrorCategory.EXTERNAL_ERROR
    assert ErrorContext.of(ErrorType.RATE_LIMITED, "x", retryable=False).retryable is False


def test_to_application_error_carries_everything_but_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEATHERAPI_API_KEY", ENV_SECRET)
    ctx = ErrorContext.of(
        ErrorType.RATE_LIMITED,
        f"429 from weatherapi for https://w.test/v1?key={ENV_SECRET}&q=Paris",
        retry_after=7,
        step_id="fetch_weather",
        details={
            "service": "weatherapi",
            "operation": "current",
            "status_code": 429,
            "inputs": {"q": "Paris", "api_key": "inline-key-123"},
            "config": {"headers": {"Authorization": "Bearer abcdefghijkl"}},
            "suggestions": ["slow down"],
        },
    )
    err = ctx.to_application_error()
    assert isinstance(err, ApplicationError)
    assert err.type == "RATE_LIMITED"
    assert err.non_retryable is False
    assert err.next_retry_delay == timedelta(seconds=7)
    (details,) = err.details
    assert details["type"] == "RATE_LIMITED"
    assert details["category"] == "EXTERNAL_ERROR"
    assert details["step_id"] == "fetch_weather"
    assert details["retry_after"] == 7
    assert details["details"]["service"] == "weatherapi"
    assert details["details"]["status_code"] == 429
    assert details["details"]["inputs"] == {"q": "Paris", "api_key": REDACTED}
    assert details["details"]["suggestions"] == ["slow down"]
    everything = err.message + json.dumps(details)
    for secret in (ENV_SECRET, "inline-key-123", "abcdefghijkl"):
        assert secret not in everything
    assert "q=Paris" in err.message


def test_non_retryable_error_has_no_retry_delay() -> None:
    err = ErrorContext.of(ErrorType.UPSTREAM_REJECTED, "400 bad request").to_application_error()
    assert err.non_retryable is True
    assert err.next_retry_delay is None
    assert err.type == "UPSTREAM_REJECTED"


def test_long_messages_are_capped() -> None:
    ctx = ErrorContext.of(ErrorType.UPSTREAM_ERROR, "e" * 5000)
    assert len(ctx.message) == 1001 and ctx.message.endswith("…")


def _activity_error(cause: BaseException) -> ActivityError:
    err = ActivityError(
        "activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker-1",
        activity_type="external_api",
        activity_id="1",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    err.__cause__ = cause
    return err


def test_from_failure_reads_the_error_context_back() -> None:
    original = ErrorContext.of(
        ErrorType.UPSTREAM_NOT_FOUND,
        "404 for place",
        details={"service": "google_places", "suggestions": ["check place_id"]},
    )
    for failure in (
        original.to_application_error(),
        _activity_error(original.to_application_error()),
    ):
        ctx = ErrorContext.from_failure(failure, step_id="details")
        assert ctx.type == "UPSTREAM_NOT_FOUND"
        assert ctx.category == "EXTERNAL_ERROR"
        assert ctx.retryable is False
        assert ctx.step_id == "details"
        assert ctx.details.service == "google_places"
        assert ctx.details.suggestions == ["check place_id"]


def test_from_failure_redacts_context_details_it_is_handed() -> None:
    # Details that came from elsewhere (an older worker, a hand-made error) are cleaned too.
    raw = {
        "type": "AUTH_ERROR",
        "category": "CONFIG_ERROR",
        "message": "rejected Bearer abcdefghijklmnop",
        "retryable": False,
        "details": {"inputs": {"password": "hunter2"}},
    }
    ctx = ErrorContext.from_failure(ApplicationError("x", raw, type="AUTH_ERROR"))
    assert "abcdefghijklmnop" not in ctx.message
    assert ctx.details.inputs == {"password": REDACTED}


def test_from_failure_known_type_without_context_details() -> None:
    err = ApplicationError("slow down", type="RATE_LIMITED", non_retryable=False)
    ctx = ErrorContext.from_failure(_activity_error(err))
    assert (ctx.type, ctx.message, ctx.retryable) == ("RATE_LIMITED", "slow down", True)


def test_from_failure_unknown_type_without_context_details() -> None:
    err = ApplicationError("boom sk-abcdefghijklmnop", type="ValueError", non_retryable=True)
    ctx = ErrorContext.from_failure(err, step_id="s")
    assert ctx.type == "INTERNAL_ERROR"
    assert ctx.category == "SYSTEM_ERROR"
    assert ctx.retryable is False
    assert ctx.message.startswith("ValueError: boom")
    assert "sk-abcdefghijklmnop" not in ctx.message
    assert ctx.step_id == "s"


def test_from_failure_untyped_application_error() -> None:
    ctx = ErrorContext.from_failure(ApplicationError("plain failure"))
    assert ctx.type == "INTERNAL_ERROR"
    assert "plain failure" in ctx.message
    assert ctx.retryable is True


def test_from_failure_activity_timeout() -> None:
    timeout = TimeoutError(
        "activity timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]
    )
    ctx = ErrorContext.from_failure(_activity_error(timeout), step_id="slow")
    assert ctx.type == "TIMEOUT"
    assert ctx.retryable is True
    assert "START_TO_CLOSE" in ctx.message
    assert ctx.step_id == "slow"
    assert ctx.details.suggestions


def test_from_failure_child_workflow_wrapper() -> None:
    child = ChildWorkflowError(
        "child failed",
        namespace="default",
        workflow_id="w",
        run_id="r",
        workflow_type="T",
        initiated_event_id=1,
        started_event_id=2,
        retry_state=None,
    )
    child.__cause__ = ErrorContext.of(ErrorType.VALIDATION_ERROR, "bad").to_application_error()
    assert ErrorContext.from_failure(child).type == "VALIDATION_ERROR"


def test_from_failure_cancelled_and_plain_exceptions() -> None:
    cancelled = ErrorContext.from_failure(_activity_error(CancelledError("gone")))
    assert (cancelled.type, cancelled.retryable) == ("CANCELLED", False)
    plain = ErrorContext.from_failure(RuntimeError("crash with token=abc12345"))
    assert plain.type == "INTERNAL_ERROR"
    assert plain.retryable is False
    assert plain.message.startswith("RuntimeError: crash")
    assert "abc12345" not in plain.message


def test_activity_error_without_cause() -> None:
    err: Any = ActivityError(
        "activity task failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="t",
        activity_id="1",
        retry_state=None,
    )
    ctx = ErrorContext.from_failure(err)
    assert ctx.type == "INTERNAL_ERROR"
    assert "activity task failed" in ctx.message
