import pytest
from django.core.exceptions import ValidationError

from accounts.models import Role, User, validate_key_patterns
from accounts.permissions import BUILTIN_ROLE_PERMISSIONS, HELIOS_CODENAMES, has_permission, qualified

pytestmark = pytest.mark.django_db


def test_passwords_are_stored_as_bcrypt_hashes(make_user):
    user = make_user(password="a-long-enough-password")
    stored = User.objects.get(pk=user.pk).password
    assert stored.startswith("bcrypt_sha256$$2b$")
    assert "a-long-enough-password" not in stored
    assert user.check_password("a-long-enough-password")
    assert not user.check_password("a-long-enough-passwore")


def test_builtin_roles_exist_with_their_permissions():
    for name, codenames in BUILTIN_ROLE_PERMISSIONS.items():
        role = Role.objects.get(name=name)
        assert sorted(role.permissions.values_list("codename", flat=True)) == sorted(codenames)
        assert role.read_key_patterns == "~*"
        assert role.write_key_patterns == "~*"


def test_every_helios_permission_is_a_django_permission():
    from django.contrib.auth.models import Permission

    assert set(Permission.objects.filter(content_type__app_label="accounts").values_list("codename", flat=True)) >= (
        HELIOS_CODENAMES
    )


def test_a_user_holds_the_permissions_of_their_roles(make_user):
    user = make_user(roles=("user",))
    assert user.has_perm(qualified("kv.write"))
    assert not user.has_perm(qualified("users.manage"))
    admin = make_user(username="root", roles=("admin",))
    assert all(admin.has_perm(qualified(codename)) for codename in HELIOS_CODENAMES)


def test_a_user_without_roles_holds_nothing(make_user):
    user = make_user(roles=())
    assert not any(has_permission(user, codename) for codename in HELIOS_CODENAMES)


def test_an_inactive_user_holds_nothing(make_user):
    user = make_user(roles=("admin",), is_active=False)
    assert not user.has_perm(qualified("kv.read"))


@pytest.mark.parametrize("patterns", ["~*", "~app:* ~cache:?", "", "~[a-c]*"])
def test_key_patterns_in_redis_acl_form_are_accepted(patterns):
    validate_key_patterns(patterns)


@pytest.mark.parametrize("patterns", ["*", "~", "~a b", "app:*"])
def test_key_patterns_without_the_tilde_are_refused(patterns):
    with pytest.raises(ValidationError):
        validate_key_patterns(patterns)
