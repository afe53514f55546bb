"""The pure cores, without sockets: balancers, circuit breaker, health state, retry budget, router."""

import collections
import random
from dataclasses import dataclass

import pytest

from proxy.balancer import ConsistentHash, make_balancer
from proxy.breaker import BreakerPolicy, CircuitBreaker, CircuitState
from proxy.health import ActiveHealth, HealthCheckPolicy, OutlierDetector, OutlierPolicy, RetryBudget
from proxy.routing import Route, Router, normalize_host


@dataclass(eq=False)
class Node:
    name: str
    weight: int = 1
    active: int = 0
    up: bool = True


def everyone(node):
    return node.up


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_round_robin_skips_what_is_down_and_keeps_the_turn():
    nodes = [Node("a"), Node("b"), Node("c")]
    balancer = make_balancer("round_robin", nodes)
    assert [balancer.pick(everyone).name for _ in range(4)] == ["a", "b", "c", "a"]
    nodes[1].up = False
    assert [balancer.pick(everyone).name for _ in range(4)] == ["c", "a", "c", "a"]
    for node in nodes:
        node.up = False
    assert balancer.pick(everyone) is None


def test_weighted_round_robin_is_smooth():
    nodes = [Node("a", 5), Node("b", 1), Node("c", 1)]
    balancer = make_balancer("weighted_round_robin", nodes)
    assert "".join(balancer.pick(everyone).name for _ in range(7)) == "aabacaa"


def test_least_connections_weighs_active_requests_by_weight():
    nodes = [Node("a", weight=1, active=2), Node("b", weight=4, active=4), Node("c", weight=1, active=3)]
    assert make_balancer("least_connections", nodes).pick(everyone).name == "b"  # 4/4 < 2/1 < 3/1


def test_power_of_two_never_picks_the_busier_of_its_two():
    nodes = [Node("a", active=5), Node("b"), Node("c")]
    balancer = make_balancer("power_of_two", nodes)
    picks = collections.Counter(balancer.pick(everyone).name for _ in range(300))
    assert picks["a"] == 0
    assert picks["b"] > 100
    assert picks["c"] > 100


def test_consistent_hash_moves_only_the_keys_of_a_lost_backend():
    nodes = [Node("a"), Node("b"), Node("c")]
    ring = ConsistentHash(nodes)
    keys = [f"k{i}" for i in range(3000)]
    before = {key: ring.pick(everyone, key).name for key in keys}
    shares = collections.Counter(before.values())
    assert all(800 < share < 1200 for share in shares.values()), shares
    nodes[2].up = False
    after = {key: ring.pick(everyone, key).name for key in keys}
    assert all(after[key] == before[key] for key in keys if before[key] != "c")
    assert "c" not in after.values()


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="unknown balancing algorithm"):
        make_balancer("random", [])


def breaker(clock, **policy):
    return CircuitBreaker(BreakerPolicy(**policy), clock)


def test_circuit_opens_after_consecutive_failures_and_recovers_through_half_open():
    clock = Clock()
    moves = []
    circuit = CircuitBreaker(
        BreakerPolicy(consecutive_failures=3, cooldown=10, half_open_probes=2),
        clock,
        on_transition=lambda old, new: moves.append((old.value, new.value)),
    )
    for _ in range(2):
        circuit.on_failure()
    circuit.on_success()  # resets the run
    for _ in range(2):
        circuit.on_failure()
    assert circuit.state is CircuitState.CLOSED
    circuit.on_failure()
    assert circuit.state is CircuitState.OPEN
    assert not circuit.available()
    clock.now += 9.9
    assert not circuit.available()
    clock.now += 0.2
    assert circuit.state is CircuitState.HALF_OPEN
    circuit.on_dispatch()
    circuit.on_dispatch()
    assert not circuit.available(), "only two probes at a time"
    circuit.on_success()
    circuit.on_success()
    assert circuit.state is CircuitState.CLOSED
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_opens_the_circuit_again():
    clock = Clock()
    circuit = breaker(clock, consecutive_failures=1, cooldown=5)
    circuit.on_failure()
    clock.now += 5
    circuit.on_dispatch()
    circuit.on_failure()
    assert circuit.state is CircuitState.OPEN
    clock.now += 4
    assert circuit.state is CircuitState.OPEN, "a new cooldown from the failed probe"


def test_an_abandoned_probe_frees_its_slot():
    clock = Clock()
    circuit = breaker(clock, consecutive_failures=1, cooldown=1, half_open_probes=1)
    circuit.on_failure()
    clock.now += 1
    circuit.on_dispatch()
    assert not circuit.available()
    circuit.on_abandon()
    assert circuit.available()


def test_circuit_opens_on_the_error_rate_over_the_window_once_there_are_enough_requests():
    clock = Clock()
    circuit = breaker(clock, consecutive_failures=100, error_rate=0.5, window=10, min_requests=10)
    for _ in range(4):
        circuit.on_success()
        circuit.on_failure()
        clock.now += 0.5
    assert circuit.state is CircuitState.CLOSED, "8 requests: below min_requests"
    circuit.on_success()
    circuit.on_failure()
    assert circuit.state is CircuitState.OPEN


def test_the_error_rate_forgets_what_left_the_window():
    clock = Clock()
    circuit = breaker(clock, consecutive_failures=100, error_rate=0.5, window=10, min_requests=4)
    for _ in range(3):
        circuit.on_failure()
    clock.now += 11
    for _ in range(3):
        circuit.on_success()
    circuit.on_failure()
    assert circuit.state is CircuitState.CLOSED  # 1 of 4 in the window


def test_active_health_follows_the_thresholds():
    health = ActiveHealth(HealthCheckPolicy(healthy_threshold=2, unhealthy_threshold=3))
    assert health.healthy
    assert [health.record(False, "refused") for _ in range(3)] == [False, False, True]
    assert not health.healthy
    assert health.last_error == "refused"
    assert [health.record(True) for _ in range(2)] == [False, True]
    assert health.healthy


def test_expected_status_is_a_range():
    policy = HealthCheckPolicy(expected_status=(200, 204))
    assert policy.accepts(204)
    assert not policy.accepts(301)


def test_outliers_are_ejected_on_errors_for_longer_each_time():
    detector = OutlierDetector(OutlierPolicy(consecutive_errors=3, ejection_time=10, max_ejection_time=25))
    assert [detector.record(0, error=True, latency=0.01) for _ in range(2)] == ["", ""]
    reason = detector.record(0, error=True, latency=0.01)
    assert reason == "3 consecutive errors"
    assert detector.eject(0, reason) == 10
    assert detector.ejected(9.9)
    assert not detector.ejected(10)
    for _ in range(3):
        reason = detector.record(20, error=True, latency=0.01)
    assert detector.eject(20, reason) == 20
    for _ in range(3):
        reason = detector.record(50, error=True, latency=0.01)
    assert detector.eject(50, reason) == 25, "capped"


def test_outliers_are_ejected_on_smoothed_latency():
    detector = OutlierDetector(OutlierPolicy(latency_threshold=0.1))
    reasons = [detector.record(0, error=False, latency=0.2) for _ in range(5)]
    assert reasons[:4] == ["", "", "", ""]
    assert reasons[4].startswith("latency 200ms")
    calm = OutlierDetector(OutlierPolicy(latency_threshold=0.1))
    assert not any(calm.record(0, error=False, latency=random.choice([0.02, 0.3, 0.03])) for _ in range(3))


def test_retry_budget_is_a_fraction_of_requests_plus_a_floor():
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, window=10)  # floor: 5 retries per window
    for _ in range(100):
        budget.record_request(0)
    granted = sum(budget.try_retry(0) for _ in range(100))
    assert granted == 25
    assert budget.exhausted == 75
    assert budget.try_retry(11), "the window moved on"


def test_routes_prefer_exact_hosts_then_wildcards_then_longest_prefix():
    router = Router(
        [
            Route("any-root"),
            Route("any-api", path_prefix="/api"),
            Route("wild", host="*.example.com"),
            Route("exact-api", host="api.example.com", path_prefix="/api/"),
        ]
    )
    assert router.match("api.example.com", "/api/users").upstream == "exact-api"
    assert router.match("api.example.com", "/other").upstream == "wild"
    assert router.match("www.example.com", "/api").upstream == "wild"
    assert router.match("example.com", "/api").upstream == "any-api"
    assert router.match("other", "/apiary").upstream == "any-root", "prefixes match whole segments"
    assert Router([Route("x", path_prefix="/x")]).match("h", "/") is None


@pytest.mark.parametrize(
    ("raw", "host"), [("Example.COM:8080", "example.com"), ("[::1]:80", "[::1]"), ("localhost", "localhost")]
)
def test_hosts_are_compared_without_port_and_case(raw, host):
    assert normalize_host(raw) == host
