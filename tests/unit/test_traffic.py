"""The ingress' traffic table and per-arm counters (runtime/traffic.py): pure, no Ray."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from runtime.traffic import (
    LATENCY_BUCKETS_MS,
    ArmStats,
    TrafficTable,
    arm_key,
    compare_predictions,
    merge_snapshots,
    quantile_ms,
    sticky_point,
)


def split(candidate_weight: float, mode: str = "split", **extra: Any) -> dict[str, Any]:
    """A traffic config of a stable arm scored in the ingress and a forwarded candidate."""
    return {
        "generation": 3, "mode": mode, **extra,
        "arms": [
            {"role": "stable", "version": "3", "app": None, "weight": 100 - candidate_weight},
            {"role": "candidate", "version": "4", "app": "iris.candidate", "weight": candidate_weight},
        ],
    }


def body(predictions: Any) -> bytes:
    return json.dumps({"predictions": predictions}).encode()


# -- weighted choice -------------------------------------------------------------------


def test_weight_20_sends_about_a_fifth_of_random_draws_to_the_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    table = TrafficTable(split(20), local_version="3")
    rng = random.Random(1234)
    monkeypatch.setattr("runtime.traffic.random.random", rng.random)
    picks = [table.pick().role for _ in range(5000)]
    share = picks.count("candidate") / len(picks) * 100
    assert 18.0 <= share <= 22.0, share
    assert set(picks) == {"stable", "candidate"}


@pytest.mark.parametrize(
    ("draw", "role"),
    [(0.0, "stable"), (0.5, "stable"), (0.7999, "stable"), (0.8, "candidate"), (0.95, "candidate"),
     (0.999999, "candidate"), (1.0, "candidate")],
)
def test_draws_at_the_boundaries(draw: float, role: str) -> None:
    table = TrafficTable(split(20), local_version="3")
    assert table.pick(draw=draw).role == role


def test_three_arms_follow_their_cumulative_weights() -> None:
    config = {"arms": [{"role": "stable", "version": "1", "weight": 50},
                       {"role": "candidate", "version": "2", "app": "a", "weight": 30},
                       {"role": "candidate", "version": "3", "app": "b", "weight": 20}]}
    table = TrafficTable(config, local_version="1")
    assert [table.pick(draw=d).version for d in (0.1, 0.49, 0.5, 0.79, 0.8, 0.99)] == ["1", "1", "2", "2", "3", "3"]


def test_an_arm_with_weight_zero_never_gets_a_request() -> None:
    table = TrafficTable(split(0), local_version="3")
    assert table.single is not None and table.single.role == "stable"
    assert {table.pick(draw=d).role for d in (0.0, 0.5, 0.99999, 1.0)} == {"stable"}


def test_all_weight_on_the_candidate_sends_it_everything() -> None:
    table = TrafficTable(split(100), local_version="3")
    assert table.single is not None and table.single.key == "candidate/4"
    assert not table.single.local
    assert {table.pick(draw=d).role for d in (0.0, 0.5, 0.99)} == {"candidate"}


def test_no_arms_is_the_local_stable_arm() -> None:
    for config in (None, {}, {"arms": []}):
        table = TrafficTable(config, local_version="7")
        assert table.mode == "split"
        assert table.generation == 0
        assert table.stable.role == "stable" and table.stable.version == "7"
        assert table.stable.local and table.stable.weight == 100.0
        assert table.pick().key == "stable/7"
        assert table.mirror(draw=0.0) is None


def test_config_values_are_read() -> None:
    table = TrafficTable(split(20, mode="ab", sticky_header="x-user-id"), local_version="3")
    assert (table.generation, table.mode, table.sticky_header) == (3, "ab", "x-user-id")
    assert [arm.key for arm in table.arms] == ["stable/3", "candidate/4"]
    assert table.arms[1].app == "iris.candidate"


# -- sticky assignment -----------------------------------------------------------------


def test_the_same_key_always_lands_on_the_same_arm() -> None:
    table = TrafficTable(split(50, mode="ab", sticky_header="x-user-id"), local_version="3")
    for user in ("alice", "bob", "carol", "user-17", ""):
        first = table.pick(key=user)
        # A random draw passed alongside must not matter when a key is given.
        assert all(table.pick(key=user, draw=d) == first for d in (0.0, 0.5, 0.99))
        # A second table built from the same config (another ingress replica) agrees.
        assert TrafficTable(split(50, mode="ab"), local_version="3").pick(key=user) == first


def test_sticky_points_are_stable_and_in_range() -> None:
    assert sticky_point("alice") == sticky_point("alice")
    points = [sticky_point(f"user-{n}") for n in range(1000)]
    assert all(0.0 <= p < 1.0 for p in points)
    assert len(set(points)) > 900


@pytest.mark.parametrize("weight", [20, 50])
def test_different_keys_split_roughly_by_weight(weight: float) -> None:
    table = TrafficTable(split(weight, mode="ab", sticky_header="x-user-id"), local_version="3")
    picks = [table.pick(key=f"user-{n}").role for n in range(5000)]
    share = picks.count("candidate") / len(picks) * 100
    assert weight - 2.5 <= share <= weight + 2.5, share


def test_raising_the_weight_only_moves_callers_to_the_candidate() -> None:
    # Cumulative bounds keep the candidate at the top of the hash space: nobody flips back.
    low = TrafficTable(split(20, mode="ab"), local_version="3")
    high = TrafficTable(split(50, mode="ab"), local_version="3")
    users = [f"user-{n}" for n in range(2000)]
    moved_back = [u for u in users if low.pick(key=u).role == "candidate" and high.pick(key=u).role == "stable"]
    assert moved_back == []


# -- shadow ----------------------------------------------------------------------------


def test_shadow_mode_always_answers_from_stable() -> None:
    table = TrafficTable(split(0, mode="shadow", shadow_sample=0.25), local_version="3")
    assert {table.pick(draw=d).role for d in (0.0, 0.3, 0.99)} == {"stable"}
    assert {table.pick(key=f"u{n}").role for n in range(200)} == {"stable"}
    assert table.shadow is not None and table.shadow.key == "candidate/4"


def test_shadow_mode_ignores_a_weight_on_the_candidate() -> None:
    table = TrafficTable(split(40, mode="shadow", shadow_sample=1.0), local_version="3")
    assert {table.pick(draw=d).role for d in (0.0, 0.7, 0.99)} == {"stable"}


def test_mirror_respects_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    table = TrafficTable(split(0, mode="shadow", shadow_sample=0.25), local_version="3")
    assert table.mirror(draw=0.0) is table.shadow
    assert table.mirror(draw=0.2499) is table.shadow
    assert table.mirror(draw=0.25) is None
    assert table.mirror(draw=0.9) is None
    rng = random.Random(99)
    monkeypatch.setattr("runtime.traffic.random.random", rng.random)
    mirrored = sum(table.mirror() is not None for _ in range(5000))
    assert 1150 <= mirrored <= 1350, mirrored


def test_mirror_is_off_outside_shadow_mode_or_without_a_sample() -> None:
    assert TrafficTable(split(20, shadow_sample=0.5), local_version="3").mirror(draw=0.0) is None
    assert TrafficTable(split(20, mode="ab", shadow_sample=0.5), local_version="3").mirror(draw=0.0) is None
    assert TrafficTable(split(0, mode="shadow"), local_version="3").mirror(draw=0.0) is None


# -- counters --------------------------------------------------------------------------


def stats(*latencies: float, errors: int = 0) -> ArmStats:
    counters = ArmStats()
    for index, latency in enumerate(latencies):
        counters.record(latency, ok=index >= errors)
    return counters


def test_record_counts_requests_errors_and_latency_buckets() -> None:
    counters = stats(0.5, 3, 700, 20000, errors=1)
    assert (counters.requests, counters.errors) == (4, 1)
    assert counters.latency_sum_ms == pytest.approx(20703.5)
    assert len(counters.buckets) == len(LATENCY_BUCKETS_MS) + 1
    assert counters.buckets[0] == 1  # ≤ 1 ms
    assert counters.buckets[LATENCY_BUCKETS_MS.index(5)] == 1
    assert counters.buckets[LATENCY_BUCKETS_MS.index(1000)] == 1
    assert counters.buckets[-1] == 1  # slower than the last bound
    assert counters.error_rate == 0.25


def test_plus_and_minus_are_inverse_windows() -> None:
    baseline = stats(3, 3, 40, errors=1)
    later = baseline.plus(stats(3, 700, errors=1))
    window = later.minus(baseline)
    assert (window.requests, window.errors) == (2, 1)
    assert window.buckets == stats(3, 700).buckets
    assert window.latency_sum_ms == pytest.approx(703)
    assert window.minus(window) == ArmStats()
    assert baseline.plus(ArmStats()) == baseline


def test_to_dict_from_dict_round_trip() -> None:
    counters = stats(1, 5, 50, errors=2)
    counters.shadow_requests, counters.compared_rows, counters.agreed_rows = 3, 10, 9
    data = json.loads(json.dumps(counters.to_dict()))
    assert ArmStats.from_dict(data) == counters
    # Unknown keys (a newer ingress) are ignored; a bucket list of the wrong length is reset.
    assert ArmStats.from_dict({**data, "future_counter": 1}) == counters
    odd = ArmStats.from_dict({"requests": 2, "buckets": [1, 1]})
    assert odd.requests == 2 and odd.buckets == [0] * (len(LATENCY_BUCKETS_MS) + 1)
    assert ArmStats.from_dict({}) == ArmStats()


def test_derived_rates_are_none_without_data() -> None:
    empty = ArmStats()
    assert (empty.error_rate, empty.agreement, empty.mean_abs_diff, empty.latency_quantile_ms(0.99)) == (None,) * 4


def test_merge_snapshots_sums_replicas_per_arm() -> None:
    one = {"stable/3": stats(3, 3).to_dict(), "candidate/4": stats(7, errors=1).to_dict()}
    two = {"stable/3": stats(700).to_dict()}
    merged = merge_snapshots([one, two])
    assert merged["stable/3"].requests == 3
    assert merged["stable/3"].buckets == stats(3, 3, 700).buckets
    assert (merged["candidate/4"].requests, merged["candidate/4"].errors) == (1, 1)
    assert merge_snapshots([]) == {}


def test_arm_key_keeps_role_and_version_apart() -> None:
    assert arm_key("candidate", "2") == "candidate/2"
    assert arm_key("stable", "1") != arm_key("candidate", "1")


# -- quantiles -------------------------------------------------------------------------


def test_quantile_is_the_upper_bound_of_its_bucket() -> None:
    counters = stats(*([3.0] * 99), 700.0)
    assert quantile_ms(counters.buckets, 0.99) == 5
    assert quantile_ms(counters.buckets, 1.0) == 1000
    assert quantile_ms(counters.buckets, 0.5) == 5
    assert counters.latency_quantile_ms(0.99) == 5


def test_quantile_past_the_last_bound_is_infinite() -> None:
    assert quantile_ms(stats(3, 60000).buckets, 1.0) == math.inf


def test_quantile_of_nothing_is_none() -> None:
    assert quantile_ms([0] * (len(LATENCY_BUCKETS_MS) + 1), 0.99) is None


def test_a_low_quantile_is_the_bucket_of_the_fastest_request() -> None:
    assert quantile_ms(stats(700, 700).buckets, 0.01) == 1000


def test_quantile_zero_never_under_estimates_the_fastest_request() -> None:
    assert quantile_ms(stats(700, 700).buckets, 0.0) == 1000


# -- shadow comparisons ----------------------------------------------------------------


def test_labels_agree_row_by_row() -> None:
    result = compare_predictions(body(["a", "b", "c", "d"]), body(["a", "x", "c", "d"]))
    assert (result.rows, result.agreed, result.numeric_rows, result.abs_diff_sum) == (4, 3, 0, 0.0)


def test_numbers_give_agreement_and_mean_abs_diff() -> None:
    result = compare_predictions(body([1.0, 2.0, 3.0, 10]), body([1.0, 2.5, 2.0, 10]))
    assert (result.rows, result.agreed, result.numeric_rows) == (4, 2, 4)
    assert result.abs_diff_sum == pytest.approx(1.5)
    counters = ArmStats()
    counters.record_comparison(result)
    assert counters.agreement == 0.5
    assert counters.mean_abs_diff == pytest.approx(0.375)


def test_booleans_are_labels_not_numbers() -> None:
    result = compare_predictions(body([True, False]), body([1, False]))
    assert (result.rows, result.numeric_rows) == (2, 0)


def test_unequal_lengths_agree_on_nothing() -> None:
    result = compare_predictions(body([1, 2, 3]), body([1, 2]))
    assert (result.rows, result.agreed, result.numeric_rows, result.abs_diff_sum) == (3, 0, 0, 0.0)


def test_column_oriented_predictions_compare_row_tuples() -> None:
    stable = body({"label": ["a", "b", "c"], "score": [0.9, 0.8, 0.7]})
    candidate = body({"label": ["a", "b", "x"], "score": [0.9, 0.1, 0.7]})
    result = compare_predictions(stable, candidate)
    assert (result.rows, result.agreed, result.numeric_rows) == (3, 1, 0)


def test_a_bare_list_and_a_scalar_are_predictions_too() -> None:
    assert compare_predictions(b"[1, 2]", b"[1, 2]").agreed == 2
    scalar = compare_predictions(body(0.5), body(0.5))
    assert (scalar.rows, scalar.agreed, scalar.numeric_rows) == (1, 1, 1)


@pytest.mark.parametrize("bad", [b"not json", b"\xff\xfe", b""])
def test_bad_json_compares_nothing(bad: bytes) -> None:
    assert compare_predictions(bad, bad).rows == 0
    result = compare_predictions(body([1, 2]), bad)
    assert (result.rows, result.agreed) == (2, 0)
