"""Settings resolution and the HTTP heads the proxy writes, without sockets."""

import pytest

from helios_site.config import ConfigError
from proxy import protocol
from proxy.conf import ProxyFlags, load_settings


def write(tmp_path, text):
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_put_the_proxy_on_8080_in_front_of_the_gateway():
    settings = load_settings(ProxyFlags(), environ={})
    assert settings.listen == ("127.0.0.1", 8080)
    assert settings.metrics_listen == ("127.0.0.1", 9093)
    assert [b.url for b in settings.upstreams[0].backends] == ["http://127.0.0.1:8443"]
    assert settings.upstreams[0].health_check.interval == 5.0


def test_flags_beat_env_beat_yaml(tmp_path):
    path = write(
        tmp_path, "proxy:\n  listen: 127.0.0.1:1111\n  health_check_interval: 2s\n  backends: [http://127.0.0.1:1]\n"
    )
    env = {"HELIOS_CONFIG": path, "HELIOS_PROXY_LISTEN": "127.0.0.1:2222"}
    assert load_settings(ProxyFlags(), environ={"HELIOS_CONFIG": path}).listen == ("127.0.0.1", 1111)
    assert load_settings(ProxyFlags(), environ=env).listen == ("127.0.0.1", 2222)
    flagged = load_settings(ProxyFlags(listen=":3333", backends=("http://127.0.0.1:9",)), environ=env)
    assert flagged.listen == ("127.0.0.1", 3333)
    assert [b.url for b in flagged.upstreams[0].backends] == ["http://127.0.0.1:9"]
    assert flagged.upstreams[0].health_check.interval == 2.0


def test_upstreams_and_routes_from_yaml(tmp_path):
    path = write(
        tmp_path,
        """
proxy:
  upstreams:
    api:
      algorithm: consistent_hash
      hash_key: header:X-User
      backends: [http://127.0.0.1:1, {url: "http://127.0.0.1:2", weight: 3}]
      health_check: {path: /ping, expected_status: 200-204, unhealthy_threshold: 5}
      circuit_breaker: {consecutive_failures: 2, cooldown: 3s}
      outlier_detection: {latency_threshold: 500ms}
  routes:
    - {host: api.example.com, path_prefix: /v1, upstream: api}
""",
    )
    settings = load_settings(ProxyFlags(config_file=path), environ={})
    (api,) = settings.upstreams
    assert api.hash_header == "x-user"
    assert [b.weight for b in api.backends] == [1, 3]
    assert api.health_check.path == "/ping"
    assert api.health_check.expected_status == (200, 204)
    assert api.breaker.consecutive_failures == 2
    assert api.breaker.cooldown == 3.0
    assert api.outlier.latency_threshold == 0.5
    assert settings.routes[0].host == "api.example.com"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("proxy:\n  backends: [ftp://x]\n", "proxy.backends[0]: expected a URL"),
        ("proxy:\n  upstreams: {a: {backends: []}}\n", "proxy.upstreams.a.backends"),
        ("proxy:\n  upstreams: {a: {backends: [http://h:1], algorithm: random}}\n", "proxy.upstreams.a.algorithm"),
        ("proxy:\n  upstreams: {a: {backends: [http://h:1], colour: red}}\n", "unknown setting colour"),
        ("proxy:\n  upstreams: {a: {backends: [http://h:1]}}\n  routes: [{upstream: b}]\n", "unknown upstream 'b'"),
        (
            "proxy:\n  upstreams: {a: {backends: [http://h:1], health_check: {expected_status: 700}}}\n",
            "expected_status",
        ),
        ("proxy:\n  upstreams: {a: {backends: [{url: 'http://h:1', weight: 0}]}}\n", "weight"),
        ("proxy:\n  upstreams: {a: {backends: [http://h:1]}, b: {backends: [http://h:2]}}\n", "proxy.routes: required"),
    ],
)
def test_bad_settings_are_refused_with_their_path(tmp_path, yaml_text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(ProxyFlags(config_file=write(tmp_path, yaml_text)), environ={})


def test_request_head_drops_hop_by_hop_and_sets_forwarding_headers():
    headers = [(b"host", b"h"), (b"connection", b"close, x-private"), (b"x-private", b"1"), (b"te", b"trailers"),
               (b"x-forwarded-for", b"1.1.1.1"), (b"accept", b"*/*")]  # fmt: skip
    head = protocol.request_head(
        b"GET", b"/p", headers, drop={b"close", b"x-private"}, client_ip=b"10.0.0.1",
        forwarded_for=b"1.1.1.1", forwarded_host=b"h", request_id=b"r1", framing=b"",
    )  # fmt: skip
    assert head == (
        b"GET /p HTTP/1.1\r\nhost: h\r\naccept: */*\r\nx-forwarded-for: 1.1.1.1, 10.0.0.1\r\n"
        b"x-forwarded-proto: http\r\nx-forwarded-host: h\r\nx-request-id: r1\r\n\r\n"
    )


def test_response_head_drops_hop_by_hop_and_adds_the_request_id():
    headers = [(b"connection", b"x-hop"), (b"x-hop", b"1"), (b"keep-alive", b"timeout=5"), (b"content-length", b"2")]
    head = protocol.response_head(200, b"OK", headers, request_id=b"r1", framing=b"")
    assert head == b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-request-id: r1\r\n\r\n"


def test_request_ids_are_kept_when_well_formed_and_made_otherwise():
    ids = protocol.RequestIds()
    assert ids.pick(b"abc-123") == b"abc-123"
    made = {ids.pick(b"bad id"), ids.pick(None), ids.pick(b"x" * 200)}
    assert len(made) == 3
    assert all(protocol.REQUEST_ID_PATTERN.match(item) for item in made)


def test_error_responses_are_json_with_detail_and_code():
    response = protocol.error_response(503, "no_healthy_backend", "None left.", request_id=b"r", close=True)
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"connection: close\r\n" in response
    assert response.endswith(b'{"detail": "None left.", "code": "no_healthy_backend"}')
