#!/bin/sh
# manage.py ARGS...: Django's manage.py as user blog. As root (docker exec's
# default) it first reads the django_secret_key secret into the environment
# (never into arguments), so files it makes in /var/lib/blog stay blog's.
exec /usr/local/bin/blog-run django_secret_key -- python3 /srv/blog/manage.py "$@"
