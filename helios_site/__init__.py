"""The HELIOS Django project: settings, URLs, ASGI/WSGI entry points, logging, health views."""
