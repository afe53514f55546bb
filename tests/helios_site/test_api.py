import pytest

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_describes_the_auth_api(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in ("register", "login", "refresh", "logout", "me"):
        assert f"/api/v1/auth/{path}" in paths
    login = paths["/api/v1/auth/login"]["post"]
    assert set(login["responses"]) == {"200", "400", "401", "429", "503"}  # 503: the rate limiter fails closed
    assert "jwtAuth" in schema["components"]["securitySchemes"]


def test_swagger_ui_is_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr" not in html
    assert "unpkg.com" not in html
    assert "/static/drf_spectacular_sidecar/" in html


def test_unknown_api_paths_are_404_json_from_drf_views_and_html_elsewhere(client):
    assert client.get("/api/v1/nothing").status_code == 404


def test_the_browsable_api_renders_for_a_browser(client):
    response = client.get("/api/v1/auth/me", HTTP_ACCEPT="text/html")
    assert response.status_code == 401
    assert b"<html" in response.content


def test_pagination_is_on_by_default():
    from django.conf import settings

    assert settings.REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] == "helios_site.api.Pagination"
    assert settings.REST_FRAMEWORK["PAGE_SIZE"] == 50
