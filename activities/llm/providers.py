"""Provider name → configured provider object, with keys and base URLs from Settings.

A missing key or base URL is reported as MissingProviderSetting so the activity can decide
what it means: the mock provider (with a warning) in development, CONFIG_ERROR elsewhere.
"""

from __future__ import annotations

import httpx
from temporalio.exceptions import ApplicationError

from activities.llm.anthropic_messages import AnthropicMessagesProvider
from activities.llm.chat import ChatProvider
from activities.llm.mock import MockProvider
from activities.llm.openai_chat import (
    OPENROUTER_APP_TITLE,
    OPENROUTER_APP_URL,
    OpenAIChatProvider,
)
from core.errors import config_error
from core.settings import PROVIDER_KEY_ENV, Settings

PROVIDERS = ("openrouter", "openai", "openai_compatible", "anthropic", "mock")


class MissingProviderSetting(Exception):
    def __init__(self, provider: str, env_var: str, what: str = "API key") -> None:
        super().__init__(f"{provider}: {env_var} is not set")
        self.provider = provider
        self.env_var = env_var
        self.what = what

    def to_application_error(self) -> ApplicationError:
        return config_error(
            f"LLM provider {self.provider!r} needs an {self.what}: set {self.env_var}",
            env_var=self.env_var,
            provider=self.provider,
        )


def _same_url(a: str | None, b: str | None) -> bool:
    return bool(a and b and a.rstrip("/") == b.rstrip("/"))


def resolve_provider(
    name: str,
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    base_url: str | None = None,
    warnings: list[str] | None = None,
) -> ChatProvider:
    """Raises MissingProviderSetting, or a non-retryable CONFIG_ERROR for an unknown name."""
    warnings = warnings if warnings is not None else []
    if name == "mock":
        return MockProvider()
    if name not in PROVIDERS:
        raise config_error(
            f"unknown LLM provider {name!r}; expected one of {', '.join(PROVIDERS)}",
            provider=name,
        )
    if name == "openai_compatible":
        return _openai_compatible(settings, http, base_url, warnings)
    key = settings.provider_key(name)
    if not key:
        raise MissingProviderSetting(name, PROVIDER_KEY_ENV[name])
    if name == "anthropic":
        return AnthropicMessagesProvider(http, base_url=settings.anthropic_base_url, api_key=key)
    if name == "openai":
        return OpenAIChatProvider(name, http, base_url=settings.openai_base_url, api_key=key)
    return OpenAIChatProvider(
        name,
        http,
        base_url=settings.openrouter_base_url,
        api_key=key,
        extra_headers={"HTTP-Referer": OPENROUTER_APP_URL, "X-Title": OPENROUTER_APP_TITLE},
    )


def _openai_compatible(
    settings: Settings, http: httpx.AsyncClient, base_url: str | None, warnings: list[str]
) -> ChatProvider:
    configured = settings.openai_compatible_base_url
    url = base_url or configured
    if not url:
        raise MissingProviderSetting("openai_compatible", "OPENAI_COMPATIBLE_BASE_URL", "base URL")
    key = settings.openai_compatible_api_key
    # The key belongs to the configured server; a definition pointing elsewhere must not be
    # able to collect it.
    if key and base_url and configured and not _same_url(base_url, configured):
        warnings.append(
            "OPENAI_COMPATIBLE_API_KEY not sent: the step's base_url differs from "
            "OPENAI_COMPATIBLE_BASE_URL"
        )
        key = None
    elif key and base_url and not configured:
        warnings.append(
            "OPENAI_COMPATIBLE_API_KEY not sent: set OPENAI_COMPATIBLE_BASE_URL to the server "
            "it belongs to"
        )
        key = None
    return OpenAIChatProvider("openai_compatible", http, base_url=url, api_key=key)
