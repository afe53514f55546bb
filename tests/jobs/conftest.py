import pytest
from rest_framework.test import APIClient

from accounts.models import Role, User


@pytest.fixture
def make_user(db):
    def make(username="alice", roles=("user",), **fields):
        user = User.objects.create_user(username=username, password="correct-horse-battery-staple", **fields)
        user.roles.set(Role.objects.filter(name__in=roles))
        return user

    return make


@pytest.fixture
def api_as():
    """An API client authenticated as the given user (the JWT path is the accounts tests' business)."""

    def client_for(user):
        client = APIClient()
        client.force_authenticate(user)
        return client

    return client_for
