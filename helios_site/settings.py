"""Django settings, built from helios_site.config (HELIOS_* env > HELIOS_CONFIG YAML > defaults).

Development (the default) runs on SQLite under var/ with a secret key generated once and kept in
var/secret_key. Production (HELIOS_ENV=production) requires HELIOS_SECRET_KEY and turns on secure
cookies, HSTS and the HTTPS redirect.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url

from helios_site import config

CONFIG = config.load()
BASE_DIR = config.BASE_DIR
VAR_DIR = Path(CONFIG.get("gateway.var_dir"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

PRODUCTION = CONFIG.get("gateway.environment") == "production"
DEBUG = CONFIG.get("gateway.debug")


def _secret_key() -> str:
    configured = CONFIG.get("gateway.secret_key")
    if configured:
        if PRODUCTION and len(configured) < 50:
            raise config.ConfigError("HELIOS_SECRET_KEY: must be at least 50 characters in production")
        return str(configured)
    if PRODUCTION:
        raise config.ConfigError("HELIOS_SECRET_KEY: required when HELIOS_ENV=production")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        # Written aside and linked into place: processes starting together agree on one key.
        draft = VAR_DIR / f".secret_key.{os.getpid()}"
        draft.touch(mode=0o600)
        draft.write_text(secrets.token_urlsafe(64))
        with contextlib.suppress(FileExistsError):
            os.link(draft, key_file)
        draft.unlink()
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

_default_hosts = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = CONFIG.get("gateway.allowed_hosts") or ([] if PRODUCTION else _default_hosts)
if PRODUCTION and not ALLOWED_HOSTS:
    raise config.ConfigError("HELIOS_GATEWAY_ALLOWED_HOSTS: required when HELIOS_ENV=production")
CSRF_TRUSTED_ORIGINS = CONFIG.get("gateway.csrf_trusted_origins")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "helios_site",
    "accounts",
    "atlas",
    "raft",
    # jobs before channels: both ship a `runworker` command, and Django takes the first app's.
    "jobs",
    "proxy",
    "channels",
]

MIDDLEWARE = [
    "helios_site.middleware.RequestIdMiddleware",
    "helios_site.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "helios_site.urls"
WSGI_APPLICATION = "helios_site.wsgi.application"
ASGI_APPLICATION = "helios_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = CONFIG.get("gateway.database_url") or f"sqlite:///{VAR_DIR / 'helios.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)}
except ValueError as exc:
    raise config.ConfigError(f"DATABASE_URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (gunicorn workers, job workers) share the file: wait for locks rather than
    # failing at once, and take the write lock at BEGIN so that readers never need to upgrade.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.backends.RolePermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    # Kept so that hashes made by another hasher (createsuperuser in an old install) still verify.
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# WhiteNoise serves static files straight from the apps (no collectstatic step to forget).
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# With ATLAS configured (HELIOS_ATLAS_URL), Django's cache lives there, shared by every process;
# otherwise each process has its own in-memory cache.
ATLAS_URL = CONFIG.get("atlas.url")
if ATLAS_URL:
    CACHES = {
        "default": {
            "BACKEND": "atlas.cache.AtlasCache",
            "LOCATION": ATLAS_URL,
            "OPTIONS": {
                "socket_timeout": CONFIG.get("atlas.socket_timeout"),
                "socket_connect_timeout": CONFIG.get("atlas.socket_timeout"),
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.RevocableJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "helios_site.api.Pagination",
    "PAGE_SIZE": CONFIG.get("gateway.page_size"),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "helios_site.api.exception_handler",
    # Client addresses come from the socket, never from a client-supplied X-Forwarded-For.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_RATES": {
        "login_username": CONFIG.get("gateway.login_rate_per_username"),
        "login_ip": CONFIG.get("gateway.login_rate_per_ip"),
    },
}

SPECTACULAR_SETTINGS = {
    "TITLE": "HELIOS API",
    "DESCRIPTION": "The HELIOS gateway: auth, the KV store, jobs and the cluster.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=CONFIG.get("gateway.access_token_lifetime")),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=CONFIG.get("gateway.refresh_token_lifetime")),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "LEEWAY": 0,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "helios_site.logs.RequestContextFilter"}},
    "formatters": {"json": {"()": "helios_site.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["stdout"], "level": CONFIG.get("gateway.log_level").upper()},
    "loggers": {
        # Django logs every 4xx/5xx through django.request; the access log already has them.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}

# Production hardening: `manage.py check --deploy --fail-level WARNING` passes with HELIOS_ENV=production.
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if CONFIG.get("gateway.trust_forwarded_proto"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = CONFIG.get("gateway.secure_ssl_redirect")
    SECURE_HSTS_SECONDS = CONFIG.get("gateway.hsts_seconds")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # Health probes and Prometheus scrapes come over plain HTTP from inside the host.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# -- Gateway (issue 7): the rate limiter over ATLAS on every DRF view, its headers on every response
# it counted, and the 429/503 answers and headers in the OpenAPI schema of every /api/v1/ operation.
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = ["accounts.throttles.AtlasRateThrottle"]
MIDDLEWARE += ["accounts.middleware.RateLimitHeadersMiddleware"]
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "accounts.schema.rate_limit_responses",
]
