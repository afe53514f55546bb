from django.contrib import admin
from django.urls import include, path
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from helios_site import health

admin.site.site_header = "HELIOS administration"
admin.site.site_title = "HELIOS"
admin.site.index_title = "HELIOS"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/auth/", include("accounts.api.urls")),
    path("api/v1/kv/", include("atlas.api.urls")),
    path("api/v1/", include("jobs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", ExportToDjangoView, name="metrics"),
]
