import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helios_site import config
from jobs.exceptions import PermanentFailure
from jobs.tasks import echo, http, sleep


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = int(self.path.strip("/") or 200)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(f"status {status}".encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.end_headers()
        self.wfile.write(json.dumps({"got": json.loads(body), "hook": self.headers.get("X-Hook")}).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def private_allowed(settings):
    settings.CONFIG = config.load({"HELIOS_WORKER_HTTP_ALLOW_PRIVATE": "1"})


def test_echo_returns_its_payload():
    assert echo(message="hi", n=1) == {"message": "hi", "n": 1}


def test_sleep_is_async_and_sleeps():
    assert asyncio.run(sleep(seconds=0.01)) == {"slept": 0.01}


def test_http_gets_and_posts_json(server, private_allowed):
    assert http(url=f"{server}/200") == {"status": 200, "body": "status 200"}
    posted = http(url=f"{server}/hook", method="POST", body={"a": 1}, headers={"X-Hook": "yes"})
    assert posted["status"] == 201
    assert json.loads(posted["body"]) == {"got": {"a": 1}, "hook": "yes"}


def test_http_retries_server_errors_but_not_client_errors(server, private_allowed):
    with pytest.raises(ConnectionError, match="answered 503"):
        http(url=f"{server}/503")
    with pytest.raises(ConnectionError, match="answered 429"):
        http(url=f"{server}/429")
    with pytest.raises(PermanentFailure, match="answered 404"):
        http(url=f"{server}/404")


def test_http_refuses_loopback_and_private_addresses_by_default(server):
    with pytest.raises(PermanentFailure, match=r"resolves to 127\.0\.0\.1, which is not a public address"):
        http(url=f"{server}/200")
    with pytest.raises(PermanentFailure, match="not a public address"):
        http(url="http://169.254.169.254/latest/meta-data")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"url": "ftp://example.com"}, "absolute http"),
        ({"url": "http://"}, "absolute http"),
        ({"url": "https://example.com", "method": "DELETE"}, "GET or POST"),
        ({"url": "https://example.com", "timeout": 0}, "timeout"),
        ({"url": "https://example.com", "timeout": 600}, "timeout"),
        ({"url": "https://example.com", "headers": {"X": 1}}, "headers"),
        ({"url": "https://example.com/" + "a" * 3000}, "2048"),
    ],
)
def test_http_payloads_are_checked_at_enqueue_time(payload, message):
    from jobs.exceptions import InvalidJob

    with pytest.raises(InvalidJob, match=message):
        http.validate(payload)
