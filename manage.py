#!/usr/bin/env python
"""Django's command-line utility; a bad setting ends it with one line on stderr and exit code 2."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helios_site.settings")
    from django.core.management import execute_from_command_line

    from helios_site.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.stderr.write(f"helios: configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
