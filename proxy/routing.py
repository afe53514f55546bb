"""Routes: which named upstream serves a request, by host and path prefix. Pure, no IO."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    """`host` is an exact name, `*.example.com`, or None for any host; `path_prefix` matches whole
    path segments: /api matches /api and /api/users but not /apiary."""

    upstream: str
    host: str | None = None
    path_prefix: str = "/"

    def matches_path(self, path: str) -> bool:
        prefix = self.path_prefix
        if not path.startswith(prefix):
            return False
        if prefix.endswith("/") or len(path) == len(prefix):
            return True
        return path[len(prefix)] in "/?"

    def matches_host(self, host: str) -> bool:
        if self.host is None:
            return True
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


def _specificity(route: Route) -> tuple[int, int]:
    host_rank = 0 if route.host is None else (1 if route.host.startswith("*.") else 2)
    return host_rank, len(route.path_prefix)


def normalize_host(raw: str) -> str:
    """The host part of a Host header, lower case, without the port."""
    host = raw.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Router:
    """The most specific matching route wins: an exact host over a wildcard over any host, then
    the longest prefix. A router is immutable; a reload builds a new one."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=_specificity, reverse=True)
        self._by_host: dict[str, list[Route]] = {}

    def match(self, host: str, path: str) -> Route | None:
        candidates = self._by_host.get(host)
        if candidates is None:
            candidates = [route for route in self.routes if route.matches_host(host)]
            if len(self._by_host) < 1024:  # bounded: hosts come from clients
                self._by_host[host] = candidates
        for route in candidates:
            if route.matches_path(path):
                return route
        return None
