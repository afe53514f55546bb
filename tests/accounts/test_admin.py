import pytest

from accounts.models import Role, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user(db):
    return User.objects.create_superuser(username="root", password="a-long-admin-password")


def test_the_admin_is_titled_helios(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"HELIOS" in response.content


def test_the_admin_lists_users_with_their_roles(client, admin_user):
    User.objects.create_user(username="alice", password="irrelevant-password").roles.set(
        Role.objects.filter(name="user")
    )
    client.force_login(admin_user)
    response = client.get("/admin/accounts/user/")
    assert response.status_code == 200
    assert b"alice" in response.content
    assert b'<td class="field-role_names">user</td>' in response.content


def test_a_role_is_edited_with_its_permissions_and_key_patterns(client, admin_user):
    client.force_login(admin_user)
    role = Role.objects.get(name="user")
    page = client.get(f"/admin/accounts/role/{role.pk}/change/")
    assert page.status_code == 200
    assert b"kv.write" in page.content
    assert b"read_key_patterns" in page.content

    response = client.post(
        f"/admin/accounts/role/{role.pk}/change/",
        {"name": "user", "description": "", "read_key_patterns": "~app:*", "write_key_patterns": "no-tilde"},
    )
    assert response.status_code == 200  # the form comes back with the error
    assert b"is not a key pattern" in response.content
    role.refresh_from_db()
    assert role.write_key_patterns == "~*"


def test_ensure_admin_creates_one_superuser_once(monkeypatch, capsys):
    from django.core.management import call_command

    monkeypatch.delenv("HELIOS_ADMIN_PASSWORD", raising=False)
    call_command("ensure_admin")
    first = capsys.readouterr().out
    assert "with password: " in first
    password = first.split("with password: ")[1].split()[0]
    admin = User.objects.get(is_superuser=True)
    assert admin.check_password(password)
    assert [role.name for role in admin.roles.all()] == ["admin"]

    call_command("ensure_admin")
    assert "already exists" in capsys.readouterr().out
    assert User.objects.filter(is_superuser=True).count() == 1


def test_ensure_admin_takes_the_password_from_the_environment(monkeypatch, capsys):
    from django.core.management import call_command

    monkeypatch.setenv("HELIOS_ADMIN_PASSWORD", "from-the-environment-42")
    call_command("ensure_admin")
    assert "from-the-environment-42" not in capsys.readouterr().out
    assert User.objects.get(is_superuser=True).check_password("from-the-environment-42")
