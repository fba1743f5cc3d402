"""The `error_metrics` transform (pure unit tests): pairing by key or position, path
alternatives (Strapi 4 `attributes` and Strapi 5 flat entries), numeric text, empty input,
config checks at load time, and linear cost."""

from __future__ import annotations

import time
from typing import Any

import pytest

from workflow_defs.transforms import TransformError, apply_transform, check_transform_config

PATHS = {
    "key": ["deal_id", "attributes.deal_id"],
    "actual": ["amount", "attributes.amount"],
    "predicted": ["weighted_amount", "attributes.weighted_amount"],
}


def metrics(actuals: Any, predictions: Any, **config: Any) -> dict[str, Any]:
    result = apply_transform(
        "error_metrics", actuals, {"predictions": predictions, **PATHS, **config}
    )
    assert isinstance(result, dict)
    return result


def test_pairs_each_actual_with_the_first_prediction_of_its_key() -> None:
    billings = [
        {"id": 1, "deal_id": 7, "amount": 1000},
        {"id": 2, "attributes": {"deal_id": "8", "amount": "1,500.00"}},  # Strapi 4, text
        {"id": 3, "deal_id": 9, "amount": 10},  # no forecast
    ]
    forecasts = [
        {"deal_id": 7, "weighted_amount": 1200},  # newest first: this one counts
        {"deal_id": 7, "weighted_amount": 1},
        {"attributes": {"deal_id": 8, "weighted_amount": "$1,200"}},
    ]
    assert metrics(billings, forecasts) == {
        "count": 2,
        "mean_absolute_error": 250.0,
        "bias": -50.0,
        "mean_absolute_percentage_error": pytest.approx((0.2 + 0.2) / 2),
        "actual_total": 2500.0,
        "predicted_total": 2400.0,
        "unmatched": 1,
    }


def test_without_a_key_items_pair_by_position_and_round_applies() -> None:
    result = metrics(
        [{"amount": 3}, {"amount": 0}, {"amount": 5}],
        [{"weighted_amount": 4}, {"weighted_amount": 1}],
        key=None,
        round=1,
    )
    assert result == {
        "count": 2,
        "mean_absolute_error": 1.0,
        "bias": 1.0,
        "mean_absolute_percentage_error": 0.3,  # the actual 0 is left out of the ratio
        "actual_total": 3.0,
        "predicted_total": 5.0,
        "unmatched": 1,
    }


def test_no_data_gives_null_means_not_an_error() -> None:
    empty = {
        "count": 0,
        "mean_absolute_error": None,
        "bias": None,
        "mean_absolute_percentage_error": None,
        "actual_total": 0.0,
        "predicted_total": 0.0,
        "unmatched": 0,
    }
    assert metrics(None, None) == empty
    assert metrics([], [{"deal_id": 1, "weighted_amount": 2}]) == empty
    odd = metrics([{"deal_id": {"x": 1}, "amount": True}], [{"deal_id": 1}])
    assert odd["count"] == 0 and odd["unmatched"] == 1


def test_bad_config_is_named_at_load_and_at_run_time() -> None:
    assert check_transform_config("error_metrics", {"actual": "a"}) == [
        ("config.predicted", "error_metrics needs 'predicted'")
    ]
    problems = dict(
        check_transform_config(
            "error_metrics",
            {"actual": "a", "predicted": ["x[", 3], "prediction_key": "k", "round": 11},
        )
    )
    assert set(problems) == {
        "config.predicted[0]",
        "config.predicted[1]",
        "config.prediction_key",
        "config.round",
    }
    # References are judged when the step runs.
    assert (
        check_transform_config(
            "error_metrics", {"actual": "a", "predicted": "${input.path}", "predictions": "${x}"}
        )
        == []
    )
    with pytest.raises(TransformError, match="predictions"):
        apply_transform("error_metrics", [], {"actual": "a", "predicted": "b", "predictions": 3})
    with pytest.raises(TransformError, match="must be a list"):
        apply_transform("error_metrics", {"a": 1}, {"actual": "a", "predicted": "b"})


def test_cost_is_linear_in_the_lists() -> None:
    def run(n: int) -> float:
        actuals = [{"deal_id": i, "amount": i} for i in range(n)]
        predictions = [{"deal_id": i, "weighted_amount": i + 1} for i in range(n)]
        start = time.perf_counter()
        result = metrics(actuals, predictions)
        assert result["count"] == n and result["bias"] == 1.0
        return time.perf_counter() - start

    small, large = run(2_000), run(16_000)
    assert large < small * 8 * 4  # 8x the input: well under quadratic growth (64x)
