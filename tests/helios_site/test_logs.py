import json
import logging

from helios_site.logs import JsonFormatter, RequestContextFilter, request_id_var


def format_record(logger_name="helios.test", msg="hello %s", args=("world",), exc_info=None, **extra):
    record = logging.LogRecord(logger_name, logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    RequestContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_a_line_has_the_fixed_keys_and_nests_extras():
    line = format_record(action="started", port=6380)
    assert line["level"] == "WARNING"
    assert line["component"] == "helios.test"
    assert line["message"] == "hello world"
    assert line["extra"] == {"action": "started", "port": 6380}
    assert line["timestamp"].endswith("Z")
    assert "request_id" not in line


def test_the_current_request_id_is_on_the_line():
    token = request_id_var.set("req-42")
    try:
        line = format_record()
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "req-42"


def test_exceptions_are_kept_as_text():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        line = format_record(exc_info=sys.exc_info())
    assert "ValueError: boom" in line["exc_info"]
    assert "exc_info" not in line["extra"]
