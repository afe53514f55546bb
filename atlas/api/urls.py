from django.urls import path

from atlas.api import views

urlpatterns = [
    path("", views.KVListView.as_view(), name="kv-list"),
    path("<path:key>", views.KVKeyView.as_view(), name="kv-key"),
]
