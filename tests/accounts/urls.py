"""A URLconf for the permission tests: the real API plus one view guarded by kv.write."""

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import KV_WRITE, require


class GuardedView(APIView):
    permission_classes = [require(KV_WRITE)]

    def post(self, request: Request) -> Response:
        return Response({"written": True})


urlpatterns = [
    path("", include("helios_site.urls")),
    path("guarded", GuardedView.as_view()),
]
