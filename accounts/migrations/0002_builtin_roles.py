"""The HELIOS permissions and the built-in roles `admin` and `user`."""

from django.db import migrations

# Frozen copies: a migration must not change when accounts.permissions does later.
PERMISSIONS = (
    ("kv.read", "Can read keys of the KV store"),
    ("kv.write", "Can write and delete keys of the KV store"),
    ("jobs.enqueue", "Can enqueue jobs"),
    ("jobs.read_all", "Can read every user's jobs"),
    ("jobs.manage", "Can cancel and retry any job"),
    ("cluster.read", "Can read the cluster status"),
    ("cluster.manage", "Can add, remove and transfer cluster nodes"),
    ("users.manage", "Can manage users and roles"),
)
ROLES = {
    "admin": ("Everything HELIOS's API offers.", [codename for codename, _ in PERMISSIONS]),
    "user": ("Given on registration.", ["kv.read", "kv.write", "jobs.enqueue", "cluster.read"]),
}


def create_roles(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Role = apps.get_model("accounts", "Role")
    content_type, _ = ContentType.objects.get_or_create(app_label="accounts", model="role")
    permissions = {
        codename: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in PERMISSIONS
    }
    for name, (description, codenames) in ROLES.items():
        role, _ = Role.objects.get_or_create(name=name, defaults={"description": description})
        role.permissions.add(*(permissions[codename] for codename in codenames))


def delete_roles(apps, schema_editor):
    apps.get_model("accounts", "Role").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
