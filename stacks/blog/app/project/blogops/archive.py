"""Reading and checking app.tar (blog-backup's output): plain Python, shared
by blog-restore and blog-verify."""
import hashlib
import posixpath
import sqlite3

DB_NAME = "db.sqlite3"
SUM_NAME = "db.sqlite3.sha256"
MIGRATIONS_NAME = "migrations"
MEDIA_NAME = "media"


class ArchiveError(Exception):
    pass


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sum_line(digest, name=DB_NAME):
    """sha256sum format: hex digest, two spaces, name."""
    return f"{digest}  {name}\n"


def parse_sum(text, name=DB_NAME):
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0].lower()
    raise ArchiveError(f"{SUM_NAME}: no checksum for {name}")


def member_name(name):
    """A tar member's normalized relative name, or None when it is unsafe
    (absolute, or climbing out with ..). "." for the top directory."""
    if name.startswith("/") or "\\" in name:
        return None
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


def connect(path):
    return sqlite3.connect(path, timeout=20, isolation_level=None)


def integrity(path):
    """Returns "ok" or sqlite's complaints, one line."""
    try:
        con = connect(path)
        try:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check")]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        return f"not a readable sqlite database ({e})"
    return "ok" if rows == ["ok"] else "; ".join(rows[:5])


def applied_migrations(path):
    """Sorted "app.name" of the migrations recorded in django_migrations."""
    con = connect(path)
    try:
        rows = con.execute("SELECT app, name FROM django_migrations").fetchall()
    except sqlite3.OperationalError as e:
        raise ArchiveError(f"{DB_NAME}: no django_migrations table ({e})")
    finally:
        con.close()
    return sorted(f"{app}.{name}" for app, name in rows)


def parse_migrations(text):
    return sorted(line.strip() for line in text.splitlines() if line.strip())


def count(path, table):
    """Rows in table, or None when the table does not exist (older release)."""
    con = connect(path)
    try:
        exists = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
            (table,)).fetchone()
        if not exists:
            return None
        return con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
    finally:
        con.close()
