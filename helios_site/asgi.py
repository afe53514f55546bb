"""ASGI entry point: gunicorn runs it with uvicorn workers (`manage.py rungateway`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helios_site.settings")

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

from helios_site import tracing

tracing.configure()
application = ProtocolTypeRouter({"http": get_asgi_application()})
