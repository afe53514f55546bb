import os

from django.core.management.base import BaseCommand, CommandParser

from accounts.services import admin_ensure


class Command(BaseCommand):
    help = "Create a superuser when there is none (password from HELIOS_ADMIN_PASSWORD, else generated)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: str) -> None:
        password = os.environ.get("HELIOS_ADMIN_PASSWORD")
        user, created, generated = admin_ensure(username=options["username"], password=password)
        if generated:
            self.stdout.write(f"Created superuser {user.username!r} with password: {generated}")
            self.stdout.write("This password is shown once: keep it, or change it in the admin.")
        elif created:
            self.stdout.write(f"Created superuser {user.username!r} with the password in HELIOS_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Superuser {user.username!r} already exists.")
