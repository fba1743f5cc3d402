"""Google Places API (New) behind the legacy `google_places` operations (GOOGLE_PLACES_API=v1).

Workflows written for the legacy web service keep working: this module turns the legacy
parameters (already validated and coerced by the registry's param map) into Places API (New)
requests, and its answers back into the legacy `{status, results[]}` / `{status, result}`
shapes. Both functions are pure; services.json names them as the v1 variant's hooks.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from workflow_defs.services import PreparedRequest, ServiceParamError

# One page: searchNearby allows at most 20 results, legacy pages hold 20 as well.
MAX_RESULTS = 20
# Text search with a location but no radius: a loose bias (the API's maximum), not a filter.
DEFAULT_BIAS_RADIUS_M = 50000.0

# Place fields we ask for; the field mask is mandatory in the new API and sets the billing SKU.
PLACE_FIELDS = [
    "id",
    "displayName",
    "formattedAddress",
    "shortFormattedAddress",
    "location",
    "rating",
    "userRatingCount",
    "types",
    "nationalPhoneNumber",
    "internationalPhoneNumber",
    "websiteUri",
    "currentOpeningHours.openNow",
    "businessStatus",
]
SEARCH_FIELD_MASK = ",".join([*(f"places.{f}" for f in PLACE_FIELDS), "nextPageToken"])
DETAILS_FIELD_MASK = ",".join(PLACE_FIELDS)

# Legacy `fields` names for place_details → Places API (New) field paths.
LEGACY_FIELDS = {
    "place_id": "id",
    "name": "displayName",
    "formatted_address": "formattedAddress",
    "vicinity": "shortFormattedAddress",
    "geometry": "location",
    "geometry/location": "location",
    "rating": "rating",
    "user_ratings_total": "userRatingCount",
    "types": "types",
    "formatted_phone_number": "nationalPhoneNumber",
    "international_phone_number": "internationalPhoneNumber",
    "website": "websiteUri",
    "opening_hours": "currentOpeningHours.openNow",
    "opening_hours/open_now": "currentOpeningHours.openNow",
    "business_status": "businessStatus",
}


def build_request(operation: str, values: dict[str, Any]) -> PreparedRequest:
    """Request hook: `values` are the legacy HTTP params after the registry's param map."""
    language = values.get("language")
    if operation == "nearby_search":
        request = _nearby(values)
    elif operation == "text_search":
        request = _text_search(values)
    elif operation == "place_details":
        request = _details(values)
    else:
        raise ServiceParamError(f"google_places.{operation} is not available with the v1 API")
    if language and request.json_body is not None:
        request.json_body["languageCode"] = str(language)
    return request


def _nearby(values: dict[str, Any]) -> PreparedRequest:
    circle = _circle(values["location"], values.get("radius"), default=None)
    place_type = values.get("type")
    # searchNearby has no keyword filter; the legacy keyword/name become a text query.
    text = " ".join(str(values[k]) for k in ("name", "keyword") if values.get(k))
    body: dict[str, Any]
    if text:
        body = {"textQuery": text, "pageSize": MAX_RESULTS, "locationBias": {"circle": circle}}
        if place_type:
            body["includedType"] = str(place_type)
        path = "/v1/places:searchText"
    else:
        body = {"maxResultCount": MAX_RESULTS, "locationRestriction": {"circle": circle}}
        if place_type:
            body["includedTypes"] = [str(place_type)]
        path = "/v1/places:searchNearby"
    return _post(path, body)


def _text_search(values: dict[str, Any]) -> PreparedRequest:
    body: dict[str, Any] = {"textQuery": str(values["query"]), "pageSize": MAX_RESULTS}
    if values.get("location"):
        circle = _circle(values["location"], values.get("radius"), default=DEFAULT_BIAS_RADIUS_M)
        body["locationBias"] = {"circle": circle}
    if values.get("type"):
        body["includedType"] = str(values["type"])
    return _post("/v1/places:searchText", body)


def _details(values: dict[str, Any]) -> PreparedRequest:
    mask = DETAILS_FIELD_MASK
    if values.get("fields"):
        wanted = ["id"]
        for name in str(values["fields"]).split(","):
            field = LEGACY_FIELDS.get(name.strip(), name.strip())
            if field and field not in wanted:
                wanted.append(field)
        mask = ",".join(wanted)
    query = {"languageCode": str(values["language"])} if values.get("language") else {}
    return PreparedRequest(
        method="GET",
        path=f"/v1/places/{quote(str(values['place_id']), safe='')}",
        query=query,
        headers_without_auth={"X-Goog-FieldMask": mask},
    )


def _post(path: str, body: dict[str, Any]) -> PreparedRequest:
    return PreparedRequest(
        method="POST",
        path=path,
        json_body=body,
        headers_without_auth={"X-Goog-FieldMask": SEARCH_FIELD_MASK},
    )


def _circle(location: Any, radius: Any, *, default: float | None) -> dict[str, Any]:
    try:
        lat_text, lng_text = str(location).split(",")
        center = {"latitude": float(lat_text), "longitude": float(lng_text)}
    except ValueError:
        raise ServiceParamError(
            f'location must be "lat,lng", got {location!r}', ["location"]
        ) from None
    if radius is None:
        if default is None:
            raise ServiceParamError("radius is required with the v1 API", ["radius"])
        radius = default
    return {"center": center, "radius": float(radius)}


def normalize_response(operation: str, data: Any) -> dict[str, Any]:
    """Response hook: Places API (New) JSON → the legacy web service's JSON shape."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object from Places API (New), got {type(data).__name__}")
    if operation == "place_details":
        return {"status": "OK", "result": legacy_place(data)}
    places = data.get("places") or []
    out: dict[str, Any] = {
        "status": "OK" if places else "ZERO_RESULTS",
        "results": [legacy_place(p) for p in places if isinstance(p, dict)],
    }
    if data.get("nextPageToken"):
        out["next_page_token"] = data["nextPageToken"]
    return out


def legacy_place(place: dict[str, Any]) -> dict[str, Any]:
    """One Place (New) as a legacy result; absent fields are left out, as the legacy API does."""
    display = place.get("displayName")
    location = place.get("location") or {}
    hours = place.get("currentOpeningHours")
    result: dict[str, Any] = {
        "place_id": place.get("id"),
        "name": display.get("text") if isinstance(display, dict) else display,
        "vicinity": place.get("shortFormattedAddress") or place.get("formattedAddress"),
        "formatted_address": place.get("formattedAddress"),
        "geometry": (
            {"location": {"lat": location.get("latitude"), "lng": location.get("longitude")}}
            if "latitude" in location and "longitude" in location
            else None
        ),
        "rating": place.get("rating"),
        "user_ratings_total": place.get("userRatingCount"),
        "types": place.get("types"),
        "formatted_phone_number": place.get("nationalPhoneNumber"),
        "international_phone_number": place.get("internationalPhoneNumber"),
        "website": place.get("websiteUri"),
        "opening_hours": (
            {"open_now": hours["openNow"]}
            if isinstance(hours, dict) and "openNow" in hours
            else None
        ),
        "business_status": place.get("businessStatus"),
    }
    return {k: v for k, v in result.items() if v is not None}
