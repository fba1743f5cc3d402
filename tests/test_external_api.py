"""external_api_call against wire-level fakes of WeatherAPI and Google Places (legacy and v1)."""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cache import ResponseCache
from activities.external_api import ExternalApiActivities, ExternalApiInput, ExternalApiOutput
from activities.http_errors import new_http_client
from core.redis_keys import cache_key
from core.settings import Settings
from tests.conftest import SHARED_DIR
from tests.fakes.http_server import FakeHTTPServer, Request, Response
from workflow_defs.services import load_services

# Shapes no redactor pattern knows: only the activity's own scrubbing can hide them.
WEATHER_KEY = "wthr7Kq2mZ9xQ4vL"
PLACES_KEY = "plcs3Tn8bY6wR1dH"
PUBLIC_KEY = "pub5Gh2kL9sV7cXe"
ALL_KEYS = (WEATHER_KEY, PLACES_KEY, PUBLIC_KEY)

WEATHER_CURRENT = {
    "location": {
        "name": "New York",
        "region": "New York",
        "country": "United States of America",
        "lat": 40.71,
        "lon": -74.01,
        "tz_id": "America/New_York",
        "localtime_epoch": 1700000000,
        "localtime": "2023-11-14 17:13",
    },
    "current": {
        "last_updated_epoch": 1699999200,
        "last_updated": "2023-11-14 17:00",
        "temp_c": 12.2,
        "temp_f": 54.0,
        "is_day": 0,
        "condition": {"text": "Partly cloudy", "icon": "//cdn.weatherapi.com/x.png", "code": 1003},
        "wind_kph": 9.0,
        "wind_dir": "WSW",
        "humidity": 45,
        "feelslike_c": 11.0,
    },
}

LEGACY_NEARBY = {
    "html_attributions": [],
    "results": [
        {
            "business_status": "OPERATIONAL",
            "geometry": {"location": {"lat": 40.7397, "lng": -73.9763}},
            "name": "Bellevue Hospital",
            "opening_hours": {"open_now": True},
            "place_id": "ChIJ_bellevue",
            "rating": 3.9,
            "types": ["hospital", "health", "point_of_interest", "establishment"],
            "user_ratings_total": 2101,
            "vicinity": "462 1st Avenue, New York",
        }
    ],
    "status": "OK",
}

V1_PLACE = {
    "id": "ChIJ_nyu",
    "types": ["hospital", "health", "point_of_interest", "establishment"],
    "nationalPhoneNumber": "(212) 263-7300",
    "internationalPhoneNumber": "+1 212-263-7300",
    "formattedAddress": "550 1st Ave, New York, NY 10016, USA",
    "shortFormattedAddress": "550 1st Ave, New York",
    "location": {"latitude": 40.742, "longitude": -73.974},
    "rating": 4.1,
    "websiteUri": "https://nyulangone.org/",
    "userRatingCount": 1234,
    "businessStatus": "OPERATIONAL",
    "displayName": {"text": "NYU Langone Health", "languageCode": "en"},
    "currentOpeningHours": {"openNow": True},
}

LEGACY_FROM_V1 = {
    "place_id": "ChIJ_nyu",
    "name": "NYU Langone Health",
    "vicinity": "550 1st Ave, New York",
    "formatted_address": "550 1st Ave, New York, NY 10016, USA",
    "geometry": {"location": {"lat": 40.742, "lng": -73.974}},
    "rating": 4.1,
    "user_ratings_total": 1234,
    "types": ["hospital", "health", "point_of_interest", "establishment"],
    "formatted_phone_number": "(212) 263-7300",
    "international_phone_number": "+1 212-263-7300",
    "website": "https://nyulangone.org/",
    "opening_hours": {"open_now": True},
    "business_status": "OPERATIONAL",
}

NEARBY_PATH = "/maps/api/place/nearbysearch/json"
SEED_HOSPITALS = {
    "location": "40.7128,-74.006",
    "radius": 8000,
    "type": "hospital",
    "keyword": "emergency",
}


@pytest.fixture(scope="module")
def _server():
    # One server per module: stopping one waits out serve_forever's 0.5 s poll.
    with FakeHTTPServer() as srv:
        yield srv


@pytest.fixture
def server(_server: FakeHTTPServer):
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
async def http():
    client = new_http_client()
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def registry():
    return load_services()


def make_settings(server: FakeHTTPServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "weatherapi_api_key": WEATHER_KEY,
        "weatherapi_base_url": server.url,
        "google_services_api_key": PLACES_KEY,
        "next_public_google_services_api_key": None,
        "google_places_base_url": server.url,
        "google_places_api": "legacy",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def make_acts(server, http, registry):
    def build(cache: ResponseCache | None = None, **overrides: Any) -> ExternalApiActivities:
        settings = make_settings(server, **overrides)
        return ExternalApiActivities(settings, http, registry, cache or ResponseCache())

    return build


async def call(acts: ExternalApiActivities, **kwargs: Any) -> ExternalApiOutput:
    kwargs.setdefault("step_id", "step")
    return await ActivityEnvironment().run(acts.external_api_call, ExternalApiInput(**kwargs))


async def call_error(acts: ExternalApiActivities, **kwargs: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as info:
        await call(acts, **kwargs)
    assert_no_key(info.value.message, info.value.details)
    return info.value


def assert_no_key(*things: Any) -> None:
    text = json.dumps(things, default=str)
    for key in ALL_KEYS:
        assert key not in text


# -- weatherapi -------------------------------------------------------------------------------


async def test_weatherapi_current_from_lat_lng(server, make_acts) -> None:
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT))
    out = await call(
        make_acts(),
        service="weatherapi",
        operation="current",
        params={"lat": 40.7128, "lng": -74.006, "aqi": False},
    )
    [req] = server.requests
    assert req.query == {"q": "40.7128,-74.006", "aqi": "no", "key": WEATHER_KEY}
    assert out.data == WEATHER_CURRENT
    assert (out.service, out.operation, out.status_code, out.cached, out.attempt) == (
        "weatherapi",
        "current",
        200,
        False,
        1,
    )
    assert_no_key(out.model_dump())


async def test_weatherapi_q_given_directly(server, make_acts) -> None:
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT))
    await call(make_acts(), service="weatherapi", operation="current", params={"q": "London"})
    assert server.requests[0].query == {"q": "London", "key": WEATHER_KEY}


async def test_missing_required_param_is_a_validation_error(server, make_acts) -> None:
    err = await call_error(
        make_acts(), service="weatherapi", operation="current", params={"lat": 1, "aqi": False}
    )
    assert err.type == "VALIDATION_ERROR"
    assert err.non_retryable
    assert "'lat' and 'lng'" in err.message
    assert err.details[0]["step_id"] == "step"
    assert server.requests == []


async def test_unknown_service_or_operation_is_a_validation_error(server, make_acts) -> None:
    err = await call_error(make_acts(), service="nope", operation="x")
    assert (err.type, err.non_retryable) == ("VALIDATION_ERROR", True)
    assert "google_places, strapi, weatherapi" in err.message
    err = await call_error(make_acts(), service="weatherapi", operation="history")
    assert "current, forecast" in err.message


async def test_weatherapi_400_carries_its_message_and_is_final(server, make_acts) -> None:
    body = {"error": {"code": 1006, "message": "No matching location found."}}
    server.route("GET", "/current.json", Response(400, body))
    err = await call_error(
        make_acts(), service="weatherapi", operation="current", params={"q": "zz"}
    )
    assert err.non_retryable
    assert err.type == "UPSTREAM_REJECTED"
    assert "No matching location found. (code 1006)" in err.message
    assert err.details[0]["details"]["status_code"] == 400


async def test_key_echoed_in_an_error_body_is_scrubbed(server, make_acts) -> None:
    body = {"error": {"code": 2006, "message": f"API key {WEATHER_KEY} is invalid."}}
    server.route("GET", "/current.json", Response(401, body))
    err = await call_error(
        make_acts(), service="weatherapi", operation="current", params={"q": "x"}
    )
    assert (err.type, err.non_retryable) == ("AUTH_ERROR", True)
    assert "is invalid" in err.message


async def test_key_echoed_in_a_success_body_is_scrubbed_from_output(server, make_acts) -> None:
    body = {**WEATHER_CURRENT, "debug": [{"request": f"/current.json?q=x&key={WEATHER_KEY}"}]}
    server.route("GET", "/current.json", Response(200, body))
    out = await call(make_acts(), service="weatherapi", operation="current", params={"q": "x"})
    assert out.data["location"] == WEATHER_CURRENT["location"]
    assert out.data["debug"][0]["request"].startswith("/current.json?q=x&key=")
    assert_no_key(out.model_dump())


async def test_503_with_retry_after_is_retryable_with_delay(server, make_acts) -> None:
    server.route("GET", "/current.json", Response(503, "busy", headers={"Retry-After": "7"}))
    err = await call_error(
        make_acts(), service="weatherapi", operation="current", params={"q": "x"}
    )
    assert err.type == "UPSTREAM_ERROR"
    assert not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=7)


async def test_missing_key_is_sample_data_in_development_and_a_config_error_elsewhere(
    server, make_acts
) -> None:
    # Development: a shipped service answers with sample data, and says so.
    acts = make_acts(weatherapi_api_key=None, environment="development")
    out = await acts.external_api_call(
        ExternalApiInput(step_id="w", service="weatherapi", operation="current", params={"q": "x"})
    )
    assert out.data["current"]["condition"]["text"] and out.status_code == 200
    assert out.warnings and out.warnings[0].startswith("sample data: WEATHERAPI_API_KEY")
    # Test and production: the key is required.
    err = await call_error(
        make_acts(weatherapi_api_key=None, environment="test"),
        service="weatherapi",
        operation="current",
        params={"q": "x"},
    )
    assert (err.type, err.non_retryable) == ("CONFIG_ERROR", True)
    assert "WEATHERAPI_API_KEY" in err.message
    err = await call_error(
        make_acts(google_services_api_key=None, environment="production"),
        service="google_places",
        operation="nearby_search",
        params=SEED_HOSPITALS,
    )
    assert err.type == "CONFIG_ERROR"
    assert "GOOGLE_SERVICES_API_KEY or NEXT_PUBLIC_GOOGLE_SERVICES_API_KEY" in err.message
    assert server.requests == []


async def test_connection_refused_and_timeout_are_retryable(server, make_acts) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    err = await call_error(
        make_acts(weatherapi_base_url=dead),
        service="weatherapi",
        operation="current",
        params={"q": "x"},
    )
    assert (err.type, err.non_retryable) == ("CONNECTION_ERROR", False)
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT, delay=1.0))
    err = await call_error(
        make_acts(),
        service="weatherapi",
        operation="current",
        params={"q": "x"},
        timeout_seconds=0.2,
    )
    assert (err.type, err.non_retryable) == ("TIMEOUT", False)


async def test_unusable_base_url_is_a_config_error(make_acts) -> None:
    err = await call_error(
        make_acts(weatherapi_base_url="ftp://weather.example"),
        service="weatherapi",
        operation="current",
        params={"q": "x"},
    )
    assert (err.type, err.non_retryable) == ("CONFIG_ERROR", True)
    assert "WEATHERAPI_BASE_URL" in json.dumps(err.details[0])


async def test_non_json_success_is_output_invalid(server, make_acts) -> None:
    server.route("GET", "/current.json", Response(200, "<html>captive portal</html>"))
    err = await call_error(
        make_acts(), service="weatherapi", operation="current", params={"q": "x"}
    )
    assert err.type == "OUTPUT_INVALID"


async def test_httpx_request_log_line_has_no_key(server, make_acts, caplog) -> None:
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT))
    with caplog.at_level(logging.INFO):
        await call(make_acts(), service="weatherapi", operation="current", params={"q": "x"})
    assert "HTTP Request" in caplog.text
    assert WEATHER_KEY not in caplog.text


# -- google_places, legacy ---------------------------------------------------------------------


async def test_legacy_nearby_search_sends_seed_params(server, make_acts) -> None:
    server.route("GET", NEARBY_PATH, Response(200, LEGACY_NEARBY))
    out = await call(
        make_acts(), service="google_places", operation="nearby_search", params=SEED_HOSPITALS
    )
    [req] = server.requests
    assert req.query == {
        "location": "40.7128,-74.006",
        "radius": "8000",
        "type": "hospital",
        "keyword": "emergency",
        "key": PLACES_KEY,
    }
    assert out.data["results"][0]["name"] == "Bellevue Hospital"
    assert out.data["status"] == "OK"


async def test_next_public_key_is_the_fallback(server, make_acts) -> None:
    server.route("GET", NEARBY_PATH, Response(200, LEGACY_NEARBY))
    acts = make_acts(google_services_api_key=None, next_public_google_services_api_key=PUBLIC_KEY)
    await call(acts, service="google_places", operation="nearby_search", params=SEED_HOSPITALS)
    assert server.requests[0].query["key"] == PUBLIC_KEY


async def test_zero_results_is_success(server, make_acts) -> None:
    body = {"html_attributions": [], "results": [], "status": "ZERO_RESULTS"}
    server.route("GET", NEARBY_PATH, Response(200, body))
    out = await call(
        make_acts(), service="google_places", operation="nearby_search", params=SEED_HOSPITALS
    )
    assert out.data == body


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        ("REQUEST_DENIED", "AUTH_ERROR", False),
        ("INVALID_REQUEST", "UPSTREAM_REJECTED", False),
        ("OVER_QUERY_LIMIT", "RATE_LIMITED", True),
        ("UNKNOWN_ERROR", "UPSTREAM_ERROR", True),
    ],
)
async def test_legacy_status_field_maps_to_errors(
    server, make_acts, status: str, error_type: str, retryable: bool
) -> None:
    body = {
        "error_message": f"Problem ({status}) for key={PLACES_KEY} and {PLACES_KEY}.",
        "html_attributions": [],
        "results": [],
        "status": status,
    }
    server.route("GET", NEARBY_PATH, Response(200, body))
    cache = ResponseCache()
    acts = make_acts(cache=cache)
    err = await call_error(
        acts, service="google_places", operation="nearby_search", params=SEED_HOSPITALS
    )
    assert err.type == error_type
    assert err.non_retryable is not retryable
    assert f"status={status}" in err.message
    assert f"Problem ({status})" in err.message
    # Failures are never cached: the next attempt calls again.
    await call_error(
        acts, service="google_places", operation="nearby_search", params=SEED_HOSPITALS
    )
    assert len(server.requests) == 2


# -- google_places, v1 -------------------------------------------------------------------------


async def test_v1_search_nearby_request_and_normalized_results(server, make_acts) -> None:
    server.route("POST", "/v1/places:searchNearby", Response(200, {"places": [V1_PLACE]}))
    out = await call(
        make_acts(google_places_api="v1"),
        service="google_places",
        operation="nearby_search",
        params={"location": "40.7128,-74.006", "radius": 8000, "type": "police"},
    )
    [req] = server.requests
    assert req.query == {}
    assert req.headers["x-goog-api-key"] == PLACES_KEY
    mask = req.headers["x-goog-fieldmask"].split(",")
    for field in ("places.id", "places.displayName", "places.formattedAddress", "places.location"):
        assert field in mask
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "maxResultCount": 20,
        "includedTypes": ["police"],
        "locationRestriction": {
            "circle": {"center": {"latitude": 40.7128, "longitude": -74.006}, "radius": 8000.0}
        },
    }
    assert out.data == {"status": "OK", "results": [LEGACY_FROM_V1]}
    assert_no_key(out.model_dump())


async def test_v1_keyword_uses_search_text_and_empty_answer_is_zero_results(
    server, make_acts
) -> None:
    server.route("POST", "/v1/places:searchText", Response(200, {}))
    out = await call(
        make_acts(google_places_api="v1"),
        service="google_places",
        operation="nearby_search",
        params=SEED_HOSPITALS,
    )
    body = server.requests[0].json()
    assert body["textQuery"] == "emergency"
    assert body["includedType"] == "hospital"
    assert body["locationBias"]["circle"]["radius"] == 8000.0
    assert out.data == {"status": "ZERO_RESULTS", "results": []}


async def test_v1_place_details_normalizes_to_result(server, make_acts) -> None:
    server.route("GET", "/v1/places/ChIJ_nyu", Response(200, V1_PLACE))
    out = await call(
        make_acts(google_places_api="v1"),
        service="google_places",
        operation="place_details",
        params={"place_id": "ChIJ_nyu"},
    )
    assert out.data == {"status": "OK", "result": LEGACY_FROM_V1}
    assert "places." not in server.requests[0].headers["x-goog-fieldmask"]


async def test_v1_error_body_message(server, make_acts) -> None:
    body = {"error": {"code": 403, "message": "API key not valid.", "status": "PERMISSION_DENIED"}}
    server.route("POST", "/v1/places:searchNearby", Response(403, body))
    err = await call_error(
        make_acts(google_places_api="v1"),
        service="google_places",
        operation="nearby_search",
        params={"location": "1,2", "type": "police"},
    )
    assert (err.type, err.non_retryable) == ("AUTH_ERROR", True)
    assert "API key not valid. (code PERMISSION_DENIED)" in err.message


# -- cache -------------------------------------------------------------------------------------


async def test_second_identical_call_is_a_cache_hit(server, make_acts) -> None:
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT))
    cache = ResponseCache()
    acts = make_acts(cache=cache)
    kwargs = {"service": "weatherapi", "operation": "current", "params": {"lat": 1, "lng": 2}}
    first = await call(acts, **kwargs, cache_ttl=3600)
    second = await call(acts, **kwargs, cache_ttl=3600)
    assert len(server.requests) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.data == first.data and second.status_code == 200
    assert cache.stats() == {"hits": 1, "misses": 1}
    # Same request spelled differently (q instead of lat/lng) is the same cache entry.
    third = await call(acts, service="weatherapi", operation="current", params={"q": "1,2"})
    assert third.cached
    # Different params, or ttl 0, go to the server.
    await call(acts, service="weatherapi", operation="current", params={"q": "3,4"})
    await call(acts, **kwargs, cache_ttl=0)
    assert len(server.requests) == 3


def _redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", "")


@pytest.mark.skipif(not _redis_url(), reason="TEST_REDIS_URL not set")
async def test_cache_shared_through_real_redis(server, make_acts) -> None:
    server.route("GET", NEARBY_PATH, Response(200, LEGACY_NEARBY))
    prefix = f"llmflow-test:{uuid.uuid4().hex}:"
    client = aioredis.from_url(_redis_url())
    try:
        worker_a = make_acts(cache=ResponseCache(client, prefix=prefix))
        cache_b = ResponseCache(client, prefix=prefix)
        worker_b = make_acts(cache=cache_b)
        kwargs = {
            "service": "google_places",
            "operation": "nearby_search",
            "params": SEED_HOSPITALS,
        }
        assert not (await call(worker_a, **kwargs)).cached
        hit = await call(worker_b, **kwargs)
        assert hit.cached and hit.data == LEGACY_NEARBY
        assert len(server.requests) == 1
        names = [n async for n in client.scan_iter(match=prefix + "*")]
        assert len(names) == 1
        assert 0 < await client.ttl(names[0]) <= 86400
        assert_no_key(names, await client.get(names[0]))
        await cache_b.clear()
        assert [n async for n in client.scan_iter(match=prefix + "*")] == []
    finally:
        async for name in client.scan_iter(match=prefix + "*"):
            await client.delete(name)
        await client.aclose()


async def test_unreachable_redis_falls_back_in_process(server, make_acts) -> None:
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT))
    client = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        cache = ResponseCache(client)
        acts = make_acts(cache=cache)
        kwargs = {"service": "weatherapi", "operation": "current", "params": {"q": "x"}}
        assert not (await call(acts, **kwargs)).cached
        assert (await call(acts, **kwargs)).cached
        assert len(server.requests) == 1
        await cache.clear()
    finally:
        await client.aclose()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BrokenRedis:
    """Fails every call, then recovers when told to: Redis restarting under a worker."""

    def __init__(self) -> None:
        self.up = False
        self.data: dict[str, str] = {}
        self.calls = 0

    async def get(self, name: str) -> Any:
        self.calls += 1
        if not self.up:
            raise ConnectionError("redis down")
        return self.data.get(name)

    async def set(self, name: str, value: str, ex: int) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionError("redis down")
        self.data[name] = value


async def test_in_process_cache_ttl_eviction_and_copies() -> None:
    clock = FakeClock()
    cache = ResponseCache(clock=clock, max_local_entries=2)
    await cache.set("a", {"v": [1]}, 10)
    got: Any = await cache.get("a")
    got["v"].append(2)
    assert await cache.get("a") == {"v": [1]}
    clock.now += 10
    assert await cache.get("a") is None
    for k in ("x", "y", "z"):
        await cache.set(k, k, 60)
    assert await cache.get("x") is None
    assert await cache.get("z") == "z"
    await cache.set("ignored", 1, 0)
    assert await cache.get("ignored") is None
    await cache.clear()
    assert await cache.get("z") is None
    assert cache.stats() == {"hits": 3, "misses": 4}


async def test_redis_failure_backs_off_then_recovers() -> None:
    clock = FakeClock()
    redis = BrokenRedis()
    cache = ResponseCache(redis, clock=clock, redis_retry_seconds=30)  # type: ignore[arg-type]
    await cache.set("k", {"v": 1}, 60)
    assert await cache.get("k") == {"v": 1}
    assert redis.calls == 1  # in back-off: no new attempt per call
    redis.up = True
    clock.now += 31
    assert await cache.get("k") is None  # Redis again, which never saw the value
    await cache.set("k", {"v": 2}, 60)
    assert await cache.get("k") == {"v": 2}
    assert list(redis.data) == ["llmflow:cache:k"]


def test_cache_key_is_stable_and_separates_calls() -> None:
    a = cache_key("weatherapi", "current", {"query": {"q": "1,2", "aqi": "no"}})
    b = cache_key("weatherapi", "current", {"query": {"aqi": "no", "q": "1,2"}})
    c = cache_key("weatherapi", "forecast", {"query": {"q": "1,2", "aqi": "no"}})
    assert a == b != c
    assert a.startswith("weatherapi.current:") and len(a.split(":")[1]) == 64


# -- the seed workflow's steps ------------------------------------------------------------------


async def test_seed_steps_run_unmodified(server, make_acts) -> None:
    path = SHARED_DIR / "seed" / "emergency_contacts.json"
    if not path.exists():
        pytest.skip(f"{path} is not beside this checkout")
    seed = json.loads(path.read_text())
    server.route("GET", "/current.json", Response(200, WEATHER_CURRENT))

    def places(req: Request) -> Response:
        return Response(200, {**LEGACY_NEARBY, "results": [{"name": req.query["type"]}]})

    server.route("GET", NEARBY_PATH, places)
    acts = make_acts()
    outputs = {}
    for step in seed["steps"]:
        if step["type"] != "external_api":
            continue
        cfg = step["config"]
        params = {
            k: {"${input.lat}": 40.7128, "${input.lng}": -74.006}.get(v, v)
            if not (isinstance(v, str) and v == "${input.lat},${input.lng}")
            else "40.7128,-74.006"
            for k, v in cfg["parameters"].items()
        }
        outputs[step["id"]] = await call(
            acts,
            step_id=step["id"],
            service=cfg["service"],
            operation=cfg["method"],
            params=params,
            cache_ttl=cfg["cache_ttl"],
        )
    assert outputs["fetch_weather"].data["location"]["name"] == "New York"
    assert outputs["fetch_police"].data["results"] == [{"name": "police"}]
    assert outputs["fetch_fire_stations"].data["results"] == [{"name": "fire_station"}]
    assert len(server.requests) == 4
