"""Sample answers for the shipped services, for a development stack with no keys.

`make dev` on a fresh machine has no WeatherAPI or Google key. Rather than every step failing
with CONFIG_ERROR (and the shipped workflows "completing" with nothing in them), a service
that has a sample here answers with made-up data in its real response shape, varied by the
request (a different place gives different weather and names), and the step's record says it
is sample data. Only ever in ENVIRONMENT=development: test and production fail as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

WARNING = (
    "sample data: {env} is not set, so {service}.{operation} answered with made-up data "
    "(development only)"
)

_CONDITIONS = ("Sunny", "Partly cloudy", "Overcast", "Light rain", "Clear", "Patchy fog")
_STREETS = ("Main St", "Oak Ave", "Harbor Blvd", "Mission St", "Elm Rd", "Hillside Dr")
_KINDS = {
    "hospital": ("General Hospital", "Medical Center", "Community Hospital", "Urgent Care"),
    "police": ("Police Department", "Police Station", "Sheriff's Office"),
    "fire_station": ("Fire Station No. 3", "Fire Department", "Fire Station No. 12"),
}
_DEFAULT_KIND = ("Community Center", "Public Library", "Recreation Center")


def _seed(*parts: Any) -> int:
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _latlng(value: Any) -> tuple[float, float]:
    try:
        lat, lng = (float(x) for x in str(value).split(",")[:2])
        return lat, lng
    except ValueError:
        return 37.7749, -122.4194


def _weather(params: dict[str, Any], forecast: bool) -> dict[str, Any]:
    q = params.get("q") or f"{params.get('lat', 37.7749)},{params.get('lng', -122.4194)}"
    lat, lng = _latlng(q)
    seed = _seed("weather", q)
    temp = round(8 + seed % 220 / 10, 1)  # 8.0 to 29.9 °C
    current = {
        "temp_c": temp,
        "temp_f": round(temp * 9 / 5 + 32, 1),
        "condition": {"text": _CONDITIONS[seed % len(_CONDITIONS)], "code": 1000 + seed % 300},
        "wind_kph": round(seed % 400 / 10, 1),
        "humidity": 30 + seed % 60,
        "feelslike_c": round(temp - 1.5, 1),
        "uv": seed % 9,
    }
    data: dict[str, Any] = {
        "location": {
            "name": f"Sample place near {lat:.2f},{lng:.2f}",
            "region": "",
            "country": "",
            "lat": lat,
            "lon": lng,
            "tz_id": "UTC",
        },
        "current": current,
    }
    if forecast:
        days = max(1, min(int(params.get("days") or 3), 10))
        data["forecast"] = {
            "forecastday": [
                {
                    "date": f"day {i + 1}",
                    "day": {
                        "maxtemp_c": round(temp + 3 + i % 3, 1),
                        "mintemp_c": round(temp - 4 - i % 2, 1),
                        "condition": {"text": _CONDITIONS[(seed + i) % len(_CONDITIONS)]},
                        "daily_chance_of_rain": (seed // (i + 1)) % 100,
                    },
                }
                for i in range(days)
            ]
        }
    return data


def _places(params: dict[str, Any]) -> dict[str, Any]:
    location = params.get("location") or params.get("query") or "37.7749,-122.4194"
    lat, lng = _latlng(location)
    kind = str(params.get("type") or params.get("keyword") or params.get("query") or "")
    names = _KINDS.get(kind, _DEFAULT_KIND)
    seed = _seed("places", location, kind)
    results = []
    for i in range(3):
        n = (seed >> (i * 8)) % 900 + 100
        street = _STREETS[(seed >> (i * 4)) % len(_STREETS)]
        name = names[(seed + i) % len(names)]
        results.append(
            {
                "name": f"Sample {name}" if i == 0 else f"Sample {name} {i + 1}",
                "place_id": f"sample-{seed % 10**8:08d}-{i}",
                "vicinity": f"{n} {street}",
                "formatted_address": f"{n} {street} (near {lat:.3f},{lng:.3f})",
                "formatted_phone_number": f"(555) 01{(seed >> i) % 100:02d}-{n:04d}"[:14],
                "geometry": {
                    "location": {
                        "lat": round(lat + (i + 1) / 200, 5),
                        "lng": round(lng - i / 200, 5),
                    }
                },
                "rating": round(3.5 + ((seed >> i) % 15) / 10, 1),
                "business_status": "OPERATIONAL",
                "opening_hours": {"open_now": True},
                "types": [kind or "point_of_interest"],
            }
        )
    return {"status": "OK", "results": results}


def _place_details(params: dict[str, Any]) -> dict[str, Any]:
    place = str(params.get("place_id") or "sample")
    seed = _seed("details", place)
    n = seed % 900 + 100
    street = _STREETS[seed % len(_STREETS)]
    return {
        "status": "OK",
        "result": {
            "place_id": place,
            "name": "Sample place",
            "formatted_address": f"{n} {street}",
            "formatted_phone_number": f"(555) 01{seed % 100:02d}-{n:04d}"[:14],
            "website": "https://example.com/",
            "opening_hours": {"open_now": True, "weekday_text": ["Open 24 hours"]},
        },
    }


SAMPLES: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("weatherapi", "current"): lambda p: _weather(p, forecast=False),
    ("weatherapi", "forecast"): lambda p: _weather(p, forecast=True),
    ("google_places", "nearby_search"): _places,
    ("google_places", "text_search"): _places,
    ("google_places", "place_details"): _place_details,
}


def sample_answer(service: str, operation: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """A made-up answer in the service's response shape, or None when there is no sample."""
    make = SAMPLES.get((service, operation))
    return make(params) if make is not None else None
