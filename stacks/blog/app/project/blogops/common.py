"""Shared plumbing for the blog-* commands and the Django project.

Plain Python (no Django import), so blog-verify can use it in a scratch
container with no volumes, no network and no secrets.
"""
import contextlib
import fcntl
import os
import pwd
import sys
import time

DATA_DIR = os.environ.get("BLOG_DATA_DIR", "/var/lib/blog")
FLAGS_DIR = os.environ.get("FLEET_FLAGS_DIR", "/run/fleet-flags")
SECRETS_DIR = os.environ.get("BLOG_SECRETS_DIR", "/run/secrets")
STATIC_ROOT = os.environ.get("BLOG_STATIC_ROOT", "/srv/static")

DB_PATH = os.path.join(DATA_DIR, "db.sqlite3")
MEDIA_DIR = os.path.join(DATA_DIR, "media")
LOCK_PATH = os.path.join(DATA_DIR, ".write.lock")
READONLY_FLAG = os.path.join(FLAGS_DIR, "readonly")

RUN_AS = "blog"

# Secret file name -> environment variable Django's settings read.
SECRET_ENV = {
    "django_secret_key": "DJANGO_SECRET_KEY",
    "akismet_key": "AKISMET_KEY",
}

# Staging dirs the commands make inside DATA_DIR (same filesystem as the
# live data, so renames are atomic); blog-start removes leftovers.
STAGING_PREFIXES = (".backup-", ".restore-")


def log(prog, msg):
    print(f"{prog}: {msg}", file=sys.stderr, flush=True)


def read_secret(name):
    """The secret's value (trailing whitespace stripped), or None when the
    file is missing or unreadable (compose secrets are root-only)."""
    try:
        with open(os.path.join(SECRETS_DIR, name), encoding="utf-8") as f:
            value = f.read().rstrip("\r\n\t ")
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return value or None


def secret(name):
    """A secret from its environment variable or, failing that, its file."""
    var = SECRET_ENV.get(name)
    if var and os.environ.get(var):
        return os.environ[var]
    return read_secret(name)


def load_secrets(*names):
    """Copies secrets into their environment variables (run this as root,
    before drop_privileges, so child processes inherit them). Returns the
    names that could not be found."""
    missing = []
    for name in names:
        var = SECRET_ENV[name]
        if os.environ.get(var):
            continue
        value = read_secret(name)
        if value is None:
            missing.append(name)
        else:
            os.environ[var] = value
    return missing


def blog_user():
    return pwd.getpwnam(RUN_AS)


def drop_privileges():
    """Becomes user blog when running as root; no-op otherwise."""
    if os.geteuid() != 0:
        return
    pw = blog_user()
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ["HOME"] = "/tmp"
    os.environ["USER"] = os.environ["LOGNAME"] = RUN_AS
    os.umask(0o022)


def chown_tree(top, uid, gid):
    """lchown everything under top not already uid:gid (cheap when all is)."""
    if not os.path.lexists(top):
        return 0
    changed = 0
    paths = [top]
    for dirpath, dirnames, filenames in os.walk(top):
        paths.extend(os.path.join(dirpath, n) for n in dirnames + filenames)
    for p in paths:
        try:
            st = os.lstat(p)
            if st.st_uid != uid or st.st_gid != gid:
                os.lchown(p, uid, gid)
                changed += 1
        except FileNotFoundError:
            pass
    return changed


def prepare_dirs(clean_staging=False):
    """As root: makes the data and static dirs and gives them to user blog."""
    if os.geteuid() != 0:
        os.makedirs(MEDIA_DIR, exist_ok=True)
        return
    pw = blog_user()
    os.makedirs(MEDIA_DIR, exist_ok=True)
    os.makedirs(STATIC_ROOT, exist_ok=True)
    os.chmod(DATA_DIR, 0o755)  # nginx (another uid) reads media/ through it
    if clean_staging:
        import shutil
        for name in os.listdir(DATA_DIR):
            if name.startswith(STAGING_PREFIXES):
                shutil.rmtree(os.path.join(DATA_DIR, name), ignore_errors=True)
    chown_tree(DATA_DIR, pw.pw_uid, pw.pw_gid)
    chown_tree(STATIC_ROOT, pw.pw_uid, pw.pw_gid)


def is_frozen():
    return os.path.exists(READONLY_FLAG)


def open_lock():
    # Read-only is enough for flock, and lets any user share a lock file
    # whoever created it.
    return os.open(LOCK_PATH, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)


class LockTimeout(Exception):
    pass


@contextlib.contextmanager
def write_lock(exclusive=False, timeout=None):
    """flock on DATA_DIR/.write.lock. Requests and the worker hold it shared
    while they write; blog-drain and blog-restore take it exclusive. Without
    a timeout it blocks; with one it polls (works in any thread)."""
    fd = open_lock()
    try:
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if timeout is None:
            fcntl.flock(fd, op)
        else:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, op | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(
                            f"{LOCK_PATH}: still held after {timeout:g} s")
                    time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock
