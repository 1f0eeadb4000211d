"""blog's settings: non-secret values from the environment (compose passes
stack.env), secrets from /run/secrets/<name> (or DJANGO_SECRET_KEY, which
the blog-* wrappers set after reading the root-only file)."""
import os
from pathlib import Path

from blogops import common


def env(name, default=""):
    value = os.environ.get(name, "")
    return value if value != "" else default


BASE_DIR = Path(__file__).resolve().parent.parent

SITE_DOMAIN = env("SITE_DOMAIN", "localhost")
FLEET_VERSION = env("FLEET_VERSION", "dev")
DEBUG = env("DJANGO_DEBUG", "0") == "1"
HTTPS = env("BLOG_HTTPS", "0") == "1"

# Empty when the secret is unavailable: Django then refuses anything that
# signs (sessions, CSRF), while ORM-only commands (blog-writes) still work.
SECRET_KEY = common.secret("django_secret_key") or ""

ALLOWED_HOSTS = [SITE_DOMAIN, "localhost", "127.0.0.1"] + [
    h.strip() for h in env("DJANGO_EXTRA_HOSTS").split(",") if h.strip()
]

CSRF_TRUSTED_ORIGINS = [f"https://{SITE_DOMAIN}", f"http://{SITE_DOMAIN}"]
if DEBUG:
    CSRF_TRUSTED_ORIGINS += [f"http://{SITE_DOMAIN}:8000"]

# nginx terminates TLS and sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "blog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside the session middleware, so session writes happen under the
    # write lock too.
    "blog.middleware.FreezeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "blogsite.urls"
WSGI_APPLICATION = "blogsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "blog.context_processors.site",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": common.DB_PATH,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = common.STATIC_ROOT
MEDIA_URL = "/media/"
MEDIA_ROOT = common.MEDIA_DIR
# nginx runs as another user and reads uploads from the shared volume.
FILE_UPLOAD_PERMISSIONS = 0o644
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o755

# Messages in a cookie: showing one never writes to the database.
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env("EMAIL_HOST", "postfix")
EMAIL_PORT = int(env("EMAIL_PORT", "25"))
EMAIL_TIMEOUT = 15
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", f"blog@{SITE_DOMAIN}")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
ADMIN_EMAIL = env("ADMIN_EMAIL", f"admin@{SITE_DOMAIN}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            # The blog-* commands whose stdout is data log to stderr.
            "stream": "ext://sys.stderr" if env("BLOG_LOG_STDERR") == "1" else "ext://sys.stdout",
            "formatter": "plain",
        },
    },
    "root": {"handlers": ["stdout"], "level": "INFO"},
}
