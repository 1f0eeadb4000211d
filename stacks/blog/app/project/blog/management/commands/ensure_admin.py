import sys

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def ensure_admin(password, out=sys.stderr):
    """Makes the superuser 'admin' when no user exists yet."""
    User = get_user_model()
    if User.objects.exists():
        return False
    if not password:
        print("ensure_admin: no admin_password secret; no admin user made", file=out)
        return False
    User.objects.create_superuser("admin", settings.ADMIN_EMAIL, password)
    print("ensure_admin: made superuser 'admin'", file=out)
    return True


class Command(BaseCommand):
    help = ("Creates the superuser 'admin' when no user exists yet, with the "
            "password read from stdin (never from arguments).")

    def handle(self, *args, **options):
        if not ensure_admin(sys.stdin.read().rstrip("\r\n")):
            self.stderr.write("ensure_admin: nothing done")
