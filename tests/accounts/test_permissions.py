import pytest
from django.contrib.auth.models import Permission

from accounts.models import Role
from accounts.permissions import require

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.accounts.urls")]


def call_guarded(api, login):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {login()['token']}")
    return api.post("/guarded", {}, format="json")


def test_a_user_without_kv_write_gets_403(api, make_user, login):
    reader = Role.objects.create(name="reader")
    reader.permissions.set(Permission.objects.filter(codename="kv.read"))
    make_user(roles=("reader",))
    response = call_guarded(api, login)
    assert response.status_code == 403
    assert response.json() == {"detail": "You need the kv.write permission.", "code": "permission_denied"}


def test_a_user_whose_role_grants_kv_write_gets_in(api, make_user, login):
    make_user(roles=("user",))
    response = call_guarded(api, login)
    assert response.status_code == 200
    assert response.json() == {"written": True}


def test_taking_the_permission_from_the_role_takes_it_from_the_user(api, make_user, login):
    make_user(roles=("user",))
    Role.objects.get(name="user").permissions.remove(Permission.objects.get(codename="kv.write"))
    assert call_guarded(api, login).status_code == 403


def test_an_anonymous_caller_gets_401(api):
    assert api.post("/guarded", {}, format="json").status_code == 401


def test_requiring_an_unknown_permission_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown HELIOS permission"):
        require("kv.teleport")
