"""ATLAS: the Redis-compatible key-value server."""
