"""WSGI entry point, for servers without ASGI; HELIOS itself runs ASGI (helios_site.asgi)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helios_site.settings")

from django.core.wsgi import get_wsgi_application

from helios_site import tracing

tracing.configure()
application = get_wsgi_application()
