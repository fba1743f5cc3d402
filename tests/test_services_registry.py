"""The declarative service registry: services.json loads, and step params map to requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_DIR
from workflow_defs.services import (
    ServiceParamError,
    ServiceRegistryError,
    UnknownServiceError,
    build_request,
    load_services,
)

SEED = SHARED_DIR / "seed" / "emergency_contacts.json"


@pytest.fixture(scope="module")
def registry():
    return load_services()


def test_shipped_registry_declares_the_seed_services(registry) -> None:
    assert registry.names() == ["google_places", "strapi", "weatherapi"]
    for op in ("current", "forecast"):
        assert registry.has("weatherapi", op)
    for op in ("nearby_search", "text_search", "place_details"):
        assert registry.has("google_places", op)
    assert not registry.has("weatherapi", "history")
    assert not registry.has("nope", "current")
    assert registry.get("weatherapi").auth.env == ["WEATHERAPI_API_KEY"]
    assert registry.get("google_places").auth.env == [
        "GOOGLE_SERVICES_API_KEY",
        "NEXT_PUBLIC_GOOGLE_SERVICES_API_KEY",
    ]
    assert registry.get("weatherapi").rate_limit.requests_per_second == 10
    assert registry.operation("weatherapi", "current").path == "/current.json"


def test_unknown_names_raise_lookup_errors_listing_known_ones(registry) -> None:
    with pytest.raises(UnknownServiceError, match="google_places, strapi, weatherapi"):
        registry.get("nope")
    with pytest.raises(UnknownServiceError, match="current, forecast"):
        registry.operation("weatherapi", "history")
    with pytest.raises(UnknownServiceError, match="variant"):
        build_request(
            registry, "google_places", "nearby_search", {"location": "1,2"}, api_variant="v9"
        )


def test_variants_resolve_base_url_and_auth(registry) -> None:
    places = registry.get("google_places")
    legacy, v1 = places.variant("legacy"), places.variant("v1")
    assert legacy.base_url == "https://maps.googleapis.com"
    assert (legacy.auth.in_, legacy.auth.name) == ("query", "key")
    assert legacy.status_check is not None
    assert v1.base_url == "https://places.googleapis.com"
    assert (v1.auth.in_, v1.auth.name) == ("header", "X-Goog-Api-Key")
    # v1 keeps the service's env vars and answers without a status field.
    assert v1.auth.env == legacy.auth.env
    assert v1.status_check is None
    assert places.variant(None).name == "legacy"


def test_cache_ttl_comes_from_the_service(registry) -> None:
    assert registry.cache_ttl("weatherapi", "current") == 1800
    assert registry.cache_ttl("google_places", "nearby_search") == 86400


# -- weatherapi -----------------------------------------------------------------------------


def test_weatherapi_current_from_lat_lng_with_aqi_no(registry) -> None:
    req = build_request(
        registry, "weatherapi", "current", {"lat": 40.7128, "lng": -74.006, "aqi": False}
    )
    assert (req.method, req.path) == ("GET", "/current.json")
    assert req.query == {"q": "40.7128,-74.006", "aqi": "no"}
    assert req.json_body is None
    assert "key" not in req.query


def test_weatherapi_q_wins_over_lat_lng_and_strings_coerce(registry) -> None:
    req = build_request(
        registry,
        "weatherapi",
        "current",
        {"q": "London", "lat": 1, "lng": 2, "aqi": "yes", "lang": "fr"},
    )
    assert req.query == {"q": "London", "aqi": "yes", "lang": "fr"}


def test_weatherapi_forecast_defaults_days_and_maps_alerts(registry) -> None:
    req = build_request(registry, "weatherapi", "forecast", {"q": "Paris", "alerts": True})
    assert req.path == "/forecast.json"
    assert req.query == {"q": "Paris", "days": "3", "alerts": "yes"}
    req = build_request(registry, "weatherapi", "forecast", {"q": "Paris", "days": "5"})
    assert req.query["days"] == "5"


def test_missing_required_param_names_the_alternatives(registry) -> None:
    with pytest.raises(ServiceParamError) as info:
        build_request(registry, "weatherapi", "current", {"lat": 40.7, "aqi": False})
    assert info.value.params == ["q"]
    assert "'q', or 'lat' and 'lng'" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_or_null_values_count_as_absent(registry) -> None:
    req = build_request(registry, "weatherapi", "current", {"q": "", "lat": 1.5, "lng": 2})
    assert req.query["q"] == "1.5,2"
    with pytest.raises(ServiceParamError):
        build_request(registry, "weatherapi", "current", {"q": None})


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": "x", "qq": 1}, "unknown parameter(s) 'qq'"),
        ({"q": "x", "aqi": "maybe"}, "parameter 'aqi': expected a boolean"),
    ],
)
def test_bad_params_are_rejected(registry, params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ServiceParamError, match=r"weatherapi\.current") as info:
        build_request(registry, "weatherapi", "current", params)
    assert fragment in str(info.value)


def test_forecast_days_must_be_an_integer(registry) -> None:
    with pytest.raises(ServiceParamError, match="expected an integer"):
        build_request(registry, "weatherapi", "forecast", {"q": "x", "days": 2.5})


# -- google_places, legacy ------------------------------------------------------------------


def test_legacy_nearby_search_maps_seed_params(registry) -> None:
    req = build_request(
        registry,
        "google_places",
        "nearby_search",
        {
            "location": "40.7128, -74.0060",
            "radius": 8000,
            "type": "hospital",
            "keyword": "emergency",
        },
    )
    assert (req.method, req.path) == ("GET", "/maps/api/place/nearbysearch/json")
    assert req.query == {
        "location": "40.7128,-74.006",
        "radius": "8000",
        "type": "hospital",
        "keyword": "emergency",
    }


def test_legacy_nearby_search_location_forms_and_default_radius(registry) -> None:
    for location in ({"lat": 1.5, "lng": 2}, [1.5, 2], {"latitude": 1.5, "longitude": 2}):
        req = build_request(registry, "google_places", "nearby_search", {"location": location})
        assert req.query == {"location": "1.5,2", "radius": "5000"}
    with pytest.raises(ServiceParamError, match="location"):
        build_request(registry, "google_places", "nearby_search", {"location": "somewhere"})
    with pytest.raises(ServiceParamError, match="out of range"):
        build_request(registry, "google_places", "nearby_search", {"location": "91,0"})


def test_legacy_text_search_and_place_details(registry) -> None:
    req = build_request(
        registry, "google_places", "text_search", {"query": "pharmacy", "language": "de"}
    )
    assert (req.path, req.query) == (
        "/maps/api/place/textsearch/json",
        {"query": "pharmacy", "language": "de"},
    )
    req = build_request(
        registry,
        "google_places",
        "place_details",
        {"place_id": "ChIJabc", "fields": ["name", "formatted_phone_number"]},
    )
    assert req.path == "/maps/api/place/details/json"
    assert req.query == {"place_id": "ChIJabc", "fields": "name,formatted_phone_number"}
    with pytest.raises(ServiceParamError, match="place_id"):
        build_request(registry, "google_places", "place_details", {})


# -- google_places, v1 (Places API (New)) -----------------------------------------------------


def test_v1_nearby_without_keyword_is_search_nearby(registry) -> None:
    req = build_request(
        registry,
        "google_places",
        "nearby_search",
        {"location": "40.7128,-74.006", "radius": 8000, "type": "police", "language": "en"},
        api_variant="v1",
    )
    assert (req.method, req.path) == ("POST", "/v1/places:searchNearby")
    assert req.query == {}
    assert req.json_body == {
        "maxResultCount": 20,
        "includedTypes": ["police"],
        "locationRestriction": {
            "circle": {"center": {"latitude": 40.7128, "longitude": -74.006}, "radius": 8000.0}
        },
        "languageCode": "en",
    }
    mask = req.headers_without_auth["X-Goog-FieldMask"].split(",")
    assert {"places.id", "places.displayName", "places.location"} <= set(mask)
    assert "X-Goog-Api-Key" not in req.headers_without_auth


def test_v1_nearby_with_keyword_is_search_text(registry) -> None:
    req = build_request(
        registry,
        "google_places",
        "nearby_search",
        {"location": "1,2", "radius": 500, "type": "hospital", "keyword": "emergency"},
        api_variant="v1",
    )
    assert req.path == "/v1/places:searchText"
    body = req.json_body
    assert body["textQuery"] == "emergency"
    assert body["includedType"] == "hospital"
    assert body["locationBias"]["circle"]["radius"] == 500.0
    assert "locationRestriction" not in body


def test_v1_text_search_and_place_details(registry) -> None:
    req = build_request(
        registry,
        "google_places",
        "text_search",
        {"query": "pharmacy", "location": "1,2"},
        api_variant="v1",
    )
    assert req.path == "/v1/places:searchText"
    assert req.json_body["textQuery"] == "pharmacy"
    assert req.json_body["locationBias"]["circle"]["center"] == {"latitude": 1.0, "longitude": 2.0}
    req = build_request(
        registry,
        "google_places",
        "place_details",
        {"place_id": "ChIJ a/b", "fields": "name,website", "language": "fr"},
        api_variant="v1",
    )
    assert (req.method, req.path) == ("GET", "/v1/places/ChIJ%20a%2Fb")
    assert req.query == {"languageCode": "fr"}
    assert req.headers_without_auth["X-Goog-FieldMask"] == "id,displayName,websiteUri"


# -- the seed workflow ------------------------------------------------------------------------


def _render(value: Any, inputs: dict[str, Any]) -> Any:
    """Just enough of the template engine for the seed's `${input.x}` parameters."""
    if isinstance(value, str):
        for name, v in inputs.items():
            if value == "${input." + name + "}":
                return v
            value = value.replace("${input." + name + "}", str(v))
    return value


def test_seed_external_api_steps_build_legacy_requests(registry) -> None:
    if not SEED.exists():
        pytest.skip(f"{SEED} is not beside this checkout")
    seed = json.loads(SEED.read_text())
    steps = [s for s in seed["steps"] if s["type"] == "external_api"]
    assert len(steps) == 4
    inputs = {"lat": 40.7128, "lng": -74.006}
    for step in steps:
        cfg = step["config"]
        assert registry.has(cfg["service"], cfg["method"])
        params = {k: _render(v, inputs) for k, v in cfg["parameters"].items()}
        req = build_request(registry, cfg["service"], cfg["method"], params)
        if cfg["service"] == "weatherapi":
            assert req.query == {"q": "40.7128,-74.006", "aqi": "no"}
        else:
            assert req.query["location"] == "40.7128,-74.006"
            assert req.query["radius"] == "8000"
            assert req.query["type"] == cfg["parameters"]["type"]


# -- a service added by editing JSON only ------------------------------------------------------


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "services.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


CUSTOM = {
    "services": {
        "tickets": {
            "base_url": "https://tickets.example.com/api",
            "auth": {
                "in": "header",
                "name": "Authorization",
                "prefix": "Bearer ",
                "env": ["T_KEY"],
            },
            "operations": {
                "create": {
                    "method": "POST",
                    "path": "/projects/{project}/tickets",
                    "params": {
                        "project": {"in": "path", "required": True},
                        "ticket.title": {"in": "body", "from": "title", "required": True},
                        "ticket.urgent": {"in": "body", "from": "urgent", "format": "boolean"},
                        "source": {"in": "body", "value": "llmflow"},
                        "X-Trace": {"in": "header", "from": "trace_id"},
                        "dry_run": {"from": "dry_run", "format": "boolean", "default": False},
                    },
                }
            },
        }
    }
}


def test_a_json_only_service_maps_path_body_header_and_query(tmp_path: Path) -> None:
    registry = load_services(_write(tmp_path, CUSTOM))
    assert registry.has("tickets", "create")
    assert registry.cache_ttl("tickets", "create") == 300
    req = build_request(
        registry,
        "tickets",
        "create",
        {"project": "ops/1", "title": "Disk full", "urgent": "yes", "trace_id": 7},
    )
    assert (req.method, req.path) == ("POST", "/projects/ops%2F1/tickets")
    assert req.json_body == {"ticket": {"title": "Disk full", "urgent": True}, "source": "llmflow"}
    assert req.headers_without_auth == {"X-Trace": "7"}
    assert req.query == {"dry_run": "false"}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["services"]["tickets"].pop("operations"), "services.tickets.operations"),
        (lambda d: d["services"]["tickets"].update(base_url="ftp://x"), "base_url"),
        (
            lambda d: d["services"]["tickets"]["operations"]["create"]["params"].pop("project"),
            "path placeholders ['project']",
        ),
        (
            lambda d: d["services"]["tickets"].update(
                status_check={
                    "field": "s",
                    "ok": ["OK"],
                    "errors": {"X": {"type": "NOPE", "retryable": False}},
                }
            ),
            "unknown error type 'NOPE'",
        ),
        (
            lambda d: d["services"]["tickets"].update(
                variants={"v2": {"request_hook": "os:system"}}, variant_env="T_API"
            ),
            "activities.module:function",
        ),
        (lambda d: d["services"]["tickets"].update(colour="blue"), "colour"),
        (lambda d: d["services"]["tickets"]["auth"].update(env=[]), "auth.env"),
    ],
)
def test_bad_registry_gives_a_clear_error(tmp_path: Path, mutate, fragment: str) -> None:
    data = json.loads(json.dumps(CUSTOM))
    mutate(data)
    with pytest.raises(ServiceRegistryError) as info:
        load_services(_write(tmp_path, data))
    message = str(info.value)
    assert message.startswith("invalid service registry ")
    assert str(tmp_path) in message
    assert fragment in message


def test_unreadable_or_malformed_registry(tmp_path: Path) -> None:
    with pytest.raises(ServiceRegistryError, match="line 1, column"):
        load_services(_write(tmp_path, '{"services": {,}}'))
    with pytest.raises(ServiceRegistryError, match="cannot read"):
        load_services(tmp_path / "missing.json")
