import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def make_user(db):
    def make(username="alice", password=PASSWORD, roles=("user",), **fields):
        user = User.objects.create_user(username=username, password=password, **fields)
        user.roles.set(Role.objects.filter(name__in=roles))
        return user

    return make


@pytest.fixture
def login(api):
    def do_login(username="alice", password=PASSWORD):
        response = api.post("/api/v1/auth/login", {"username": username, "password": password}, format="json")
        assert response.status_code == 200, response.content
        return response.json()

    return do_login
