"""All configuration, read once from the environment (and `.env`)."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.paths import DEFAULT_PROMPTS_DIR, DEFAULT_STATE_DIR, DEFAULT_WORKFLOW_DEFS_DIR

# Which env var holds each LLM provider's key; also used in CONFIG_ERROR messages.
PROVIDER_KEY_ENV = {
    "openrouter": "OPENROUTER_API_KEY",
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openai_compatible": "OPENAI_COMPATIBLE_API_KEY",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "production", "test"] = "development"
    log_level: str = "INFO"
    port: int = 8000
    host: str = "127.0.0.1"

    # Where `llmflow dev` keeps the dev server's SQLite file (LLMFLOW_STATE_DIR).
    llmflow_state_dir: Path = DEFAULT_STATE_DIR
    database_url: str = f"sqlite:///{DEFAULT_STATE_DIR / 'llmflow.db'}"
    # false: the gateway, the worker and the reconciler never change the schema; a start against
    # a database behind the newest migration refuses, saying to run `llmflow db upgrade` (for
    # teams that migrate in a deploy step, under their own review and locks).
    database_auto_migrate: bool = True
    redis_url: str | None = None

    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "llm-workflows"
    # false: the namespace has no custom search attributes and can't get them (no operator
    # rights, or Temporal's time-skipping test server); jobs run without them.
    temporal_search_attributes: bool = True
    temporal_ui_port: int = 8233
    temporal_ui_url: str | None = None
    # Worker-side Prometheus endpoint (Temporal SDK metrics + llmflow_cache_requests); off when unset.
    worker_metrics_port: int | None = None
    # Address it binds: loopback by default, like everything else; 0.0.0.0 to let Prometheus in.
    worker_metrics_host: str = "127.0.0.1"
    # OpenTelemetry tracing (core/tracing.py), off unless set: the OTLP/HTTP collector, e.g.
    # http://localhost:4318 (spans go to its /v1/traces). The OTel SDK reads the other OTEL_* vars.
    otel_exporter_otlp_endpoint: str | None = None
    # Also put prompts, replies and outbound query values on spans (keys are redacted still).
    llmflow_trace_content: bool = False

    workflow_defs_dir: Path = DEFAULT_WORKFLOW_DEFS_DIR
    prompts_dir: Path = DEFAULT_PROMPTS_DIR

    openrouter_api_key: str | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    openai_compatible_api_key: str | None = None
    openai_compatible_base_url: str | None = None
    llm_default_provider: str = "openrouter"
    llm_mock_latency_ms: int = 0

    weatherapi_api_key: str | None = None
    weatherapi_base_url: str | None = None
    google_services_api_key: str | None = None
    next_public_google_services_api_key: str | None = None
    google_places_base_url: str | None = None
    google_places_api: Literal["legacy", "v1"] = "legacy"

    llm_webhook_secret: str | None = None
    # Fernet key(s), comma-separated, sealing per-job webhook secrets at rest (core/secret_box.py).
    llmflow_secret_key: SecretStr | None = None
    # AES-256-GCM encryption of every payload sent to Temporal (core/payload_codec.py), off
    # unless set: 32 random bytes, base64. The id is stored with each payload (default: derived
    # from the key); LLMFLOW_PAYLOAD_OLD_KEYS, comma-separated `id:key`, still decrypt.
    llmflow_payload_key: SecretStr | None = None
    llmflow_payload_key_id: str | None = None
    llmflow_payload_old_keys: SecretStr | None = None
    webhook_allow_private: bool = False
    # `name:key` entries (a bare key is named after its hash); API_ADMINS names the keys that
    # see every job, not only their own.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_admins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # `name:usd` entries: what a key's jobs submitted today (UTC) may spend on llm calls;
    # a submit once that is reached answers 429 (api/key_budgets.py).
    api_key_budgets: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    strapi_webhook_secret: str | None = None
    strapi_webhook_token: str | None = None
    # The `strapi` service of services.json (external_api steps): the REST API root, e.g.
    # https://cms.example.com/api, and an API token sent as `Authorization: Bearer …`.
    strapi_url: str | None = None
    strapi_api_token: str | None = None
    alert_webhook_url: str | None = None
    # ERROR and CRITICAL alerts by e-mail (activities/alert_email.py), sent after the alert is
    # stored, never in its way: a mail server that is down only costs a log line.
    alert_email_enabled: bool = False
    alert_email_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    alert_email_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # STARTTLS before authenticating (port 587); off only for a relay on a trusted network.
    smtp_starttls: bool = True
    # A PEM bundle of CAs to trust for the mail server's certificate (a private relay's CA).
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_request_bytes: int = 1024 * 1024
    # POST /workflows/validate checks definitions on this many threads of its own, so a burst
    # never occupies the pool database calls share; past VALIDATE_MAX_PENDING waiting, 429.
    # Validation is pure Python: under the GIL a second thread adds no throughput, only
    # contention with the event loop.
    validate_workers: int = Field(default=1, ge=1, le=32)
    validate_max_pending: int = Field(default=16, ge=1)

    @field_validator("api_keys", "api_admins", "alert_email_to", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        # API_KEYS="k1,k2" (ALERT_EMAIL_TO="a@x,b@y") is the natural way to write a list in an
        # env var.
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("api_key_budgets", mode="before")
    @classmethod
    def _parse_key_budgets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        budgets: dict[str, float] = {}
        for entry in filter(None, (e.strip() for e in value.split(","))):
            name, sep, usd = entry.rpartition(":")
            try:
                amount = float(usd)
            except ValueError:
                amount = -1.0
            if not sep or not name or amount < 0:
                raise ValueError(f"API_KEY_BUDGETS entry {entry!r} is not name:usd")
            budgets[name] = amount
        return budgets

    @field_validator(
        "redis_url",
        "temporal_ui_url",
        "openai_compatible_base_url",
        "strapi_url",
        "smtp_host",
        "smtp_ca_file",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def google_places_key(self) -> str | None:
        return self.google_services_api_key or self.next_public_google_services_api_key

    def provider_key(self, provider: str) -> str | None:
        env = PROVIDER_KEY_ENV.get(provider)
        return getattr(self, env.lower()) if env else None

    def temporal_ui_base(self) -> str:
        if self.temporal_ui_url:
            return self.temporal_ui_url.rstrip("/")
        host = self.temporal_address.rsplit(":", 1)[0] or "localhost"
        return f"http://{host}:{self.temporal_ui_port}"

    def job_ui_url(self, job_id: str, run_id: str | None = None) -> str:
        """A job's page in the Temporal Web UI (its run's history when the run is known)."""
        base = f"{self.temporal_ui_base()}/namespaces/{self.temporal_namespace}/workflows/{job_id}"
        return f"{base}/{run_id}/history" if run_id else base


@lru_cache
def get_settings() -> Settings:
    return Settings()
