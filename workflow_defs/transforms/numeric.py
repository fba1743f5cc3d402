"""Numeric transforms: error_metrics.

- error_metrics: how far predictions were from what happened. The data (or the list at
  `array_path` inside it) holds the actual items; `predictions` is a second list. Each actual
  item is paired with the first prediction whose `prediction_key` equals its `key` (numbers and
  numeric text compare as text, so 7 pairs with "7"); without `key`, items pair by position.
  `actual` and `predicted` are paths to the numbers inside the items. Every path parameter may
  be a list of alternatives, the first non-null wins: `["amount", "attributes.amount"]` reads
  Strapi 5's flat entries and Strapi 4's `attributes` alike. Numbers may be numeric text
  ("1,200.50", "$300"). A pair missing either number is counted in `unmatched`, not an error.

  Result: `{count, mean_absolute_error, bias, mean_absolute_percentage_error, actual_total,
  predicted_total, unmatched}`. `bias` is the mean of predicted - actual (positive: the
  predictions ran high); the percentage error skips actual values of 0; with no pairs the means
  are null. `round` (0-10) rounds every figure to that many decimals.

Linear in the two lists (one dict of the predictions by key), both held to the input limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from workflow_defs.transforms.errors import TransformError
from workflow_defs.transforms.limits import check_data
from workflow_defs.transforms.objects import parse_number
from workflow_defs.transforms.paths import (
    PathSyntaxError,
    Segment,
    check_path,
    get_path,
    parse_path,
)
from workflow_defs.transforms.spec import OperationSpec, Problem, deferred, kind_of
from workflow_defs.transforms.values import select_list

OPERATION = "error_metrics"
_PATH_PARAMS = ("actual", "predicted", "key", "prediction_key")


def _alternatives(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _check(config: Mapping[str, Any], at_load: bool) -> list[Problem]:
    found: list[Problem] = []
    for name in _PATH_PARAMS:
        value = config.get(name)
        if value is None or deferred(value, at_load):
            continue
        alternatives = _alternatives(value)
        if not alternatives:
            found.append((f"config.{name}", "must name at least one path"))
        for i, path in enumerate(alternatives):
            where = f"config.{name}" if not isinstance(value, list) else f"config.{name}[{i}]"
            if deferred(path, at_load):
                continue
            if not isinstance(path, str):
                found.append((where, f"must be a path string (got {kind_of(path)})"))
            elif error := check_path(path):
                found.append((where, error))
    if config.get("prediction_key") is not None and config.get("key") is None:
        found.append(("config.prediction_key", "needs config.key (the actual items' key)"))
    digits = config.get("round")
    if digits is not None and not deferred(digits, at_load):
        if isinstance(digits, bool) or not isinstance(digits, int) or not 0 <= digits <= 10:
            found.append(("config.round", f"must be an integer from 0 to 10 (got {digits!r})"))
    return found


def _parsed(value: Any, where: str) -> list[tuple[Segment, ...]]:
    """Each alternative parsed once per step, not once per item."""
    try:
        return [parse_path(path) for path in _alternatives(value)]
    except PathSyntaxError as exc:
        raise TransformError(OPERATION, where, str(exc)) from None


def _first(item: Any, paths: Sequence[tuple[Segment, ...]]) -> Any:
    for segments in paths:
        if len(segments) == 1 and isinstance(segments[0], str) and isinstance(item, dict):
            value = item.get(segments[0])  # the common case, without the general walk
        else:
            value = get_path(item, segments)
        if value is not None:
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        parsed = parse_number(value)
        return None if parsed is None else float(parsed)
    return None


def _key_text(value: Any) -> str | None:
    """Keys compare as text: 7, 7.0 and "7" are the same deal; objects and lists never pair."""
    if value is None or isinstance(value, bool | list | tuple | Mapping):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _error_metrics(data: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    actuals = select_list(OPERATION, data, config)
    raw_predictions = config.get("predictions")
    if raw_predictions is None:
        raw_predictions = []
    if not isinstance(raw_predictions, list | tuple):
        raise TransformError(
            OPERATION, "config.predictions", f"must be a list (got {kind_of(raw_predictions)})"
        )
    predictions = list(check_data(OPERATION, raw_predictions, "config.predictions"))
    actual_paths = _parsed(config["actual"], "config.actual")
    predicted_paths = _parsed(config["predicted"], "config.predicted")
    key = config.get("key")
    pairs: list[tuple[Any, Any]] = []
    if key is None:
        pairs = list(zip(actuals, predictions, strict=False))
        pairs += [(item, None) for item in actuals[len(predictions) :]]
    else:
        key_paths = _parsed(key, "config.key")
        prediction_paths = _parsed(
            config.get("prediction_key") or key,
            "config.prediction_key" if config.get("prediction_key") else "config.key",
        )
        by_key: dict[str, Any] = {}
        for prediction in predictions:
            text = _key_text(_first(prediction, prediction_paths))
            if text is not None:
                by_key.setdefault(text, prediction)  # the first (newest when sorted) wins
        for item in actuals:
            text = _key_text(_first(item, key_paths))
            pairs.append((item, by_key.get(text) if text is not None else None))
    errors: list[float] = []
    ratios: list[float] = []
    actual_total: list[float] = []
    predicted_total: list[float] = []
    unmatched = 0
    for item, prediction in pairs:
        actual = _number(_first(item, actual_paths))
        predicted = None if prediction is None else _number(_first(prediction, predicted_paths))
        if actual is None or predicted is None:
            unmatched += 1
            continue
        errors.append(predicted - actual)
        actual_total.append(actual)
        predicted_total.append(predicted)
        if actual != 0:
            ratios.append(abs(predicted - actual) / abs(actual))
    count = len(errors)
    figures: dict[str, float | None] = {
        "mean_absolute_error": math.fsum(abs(e) for e in errors) / count if count else None,
        "bias": math.fsum(errors) / count if count else None,
        "mean_absolute_percentage_error": math.fsum(ratios) / len(ratios) if ratios else None,
        "actual_total": math.fsum(actual_total),
        "predicted_total": math.fsum(predicted_total),
    }
    digits = config.get("round")
    if digits is not None:
        figures = {k: None if v is None else round(v, digits) for k, v in figures.items()}
    return {"count": count, **figures, "unmatched": unmatched}


SPECS = [
    OperationSpec(
        OPERATION,
        _error_metrics,
        {
            "predictions": ("array",),
            "actual": ("string", "array"),
            "predicted": ("string", "array"),
            "key": ("string", "array"),
            "prediction_key": ("string", "array"),
            "array_path": ("string",),
            "round": ("integer",),
        },
        required=(("actual",), ("predicted",)),
        check=_check,
    )
]
