#!/usr/bin/env python3
"""Django's command-line utility (use the `manage.py` wrapper on PATH: it
reads the secrets and drops to user blog when run as root)."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blogsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
