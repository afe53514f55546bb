"""The reverse proxy: load balancing, health checks and circuit breakers."""
