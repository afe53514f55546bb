"""The uvicorn worker class gunicorn runs for the gateway."""

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker as _UvicornWorker


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]  # the library is untyped
    """uvloop and httptools; no lifespan (Django has none); the peer address is the client address
    (X-Forwarded-For is interpreted by the gateway itself, from trusted proxies only)."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "off",
        "proxy_headers": False,
        "server_header": False,
    }
