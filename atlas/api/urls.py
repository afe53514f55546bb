from django.urls import path, register_converter

from atlas.api import views


class KeyConverter:
    """The rest of the path, whatever it holds (the view refuses what a key may not be)."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(KeyConverter, "kvkey")

urlpatterns = [
    path("", views.KVListView.as_view(), name="kv-list"),
    path("<kvkey:key>", views.KVKeyView.as_view(), name="kv-key"),
]
