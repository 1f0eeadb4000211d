"""The incremental sync's Python side, on the host (no Django, no Docker):

    python3 -m unittest discover -s stacks/blog/app/tests

(Python 3.11.4 or later: tarfile's extraction filters.) A sender's
blog-backup and a receiver's blog-restore steps run in subprocesses with
their own BLOG_DATA_DIR: a full archive sets the receiver's base, then
deltas (database pages, new, changed and removed media) must rebuild
exactly the sender's data; a wrong base must be refused as BaseMismatch.
"""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

APP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKUP = os.path.join(APP, "bin", "blog-backup")
RESTORE = os.path.join(APP, "bin", "blog-restore")

# Runs in the receiver's environment: blog-restore's steps without Django
# (no migrate, no collectstatic); prints the outcome as JSON.
DRIVER = r'''
import json, os, shutil, sys, tempfile
from importlib.machinery import SourceFileLoader
r = SourceFileLoader("blog_restore", sys.argv[1]).load_module()
from blogops import archive, common, delta
stage = tempfile.mkdtemp(prefix=".restore-", dir=common.DATA_DIR)
sys.stdin = open(sys.argv[2], "r")
try:
    names = r.extract(stage)
    if delta.DELTA_NAME in names:
        target, how = r.apply_delta(stage, names)
    else:
        target = json.load(open(os.path.join(stage, delta.MANIFEST_NAME)))
        r.check_media_full(stage, target)
        how = "full"
    db = os.path.join(stage, archive.DB_NAME)
    nb = r.new_base(stage, target)
    shutil.copyfile(db, common.DB_PATH)
    r.swap_media(stage)
    r.set_base(nb, target)
    print(json.dumps({"ok": how, "id": delta.base_id()}))
except delta.BaseMismatch as e:
    print(json.dumps({"mismatch": str(e)}))
except (r.Failure, delta.DeltaError) as e:
    print(json.dumps({"failed": str(e)}))
finally:
    shutil.rmtree(stage, ignore_errors=True)
'''


# Runs blog-backup as is, except that it stays the test's user (it drops
# root to user blog, which the host has not).
BACKUP_DRIVER = r'''
import runpy, sys
from blogops import common
common.drop_privileges = lambda: None
sys.argv = [sys.argv[1]]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


def tree(top):
    out = {}
    for dirpath, _, files in os.walk(top):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, top)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def rows(db):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, body FROM blog_post ORDER BY id").fetchall()
    finally:
        con.close()


def leftovers(data):
    """A data dir's restore stages (.restore-*, not the helper's files)."""
    return sorted(n for n in os.listdir(data) if n.startswith(".restore-"))


class Pair(unittest.TestCase):
    """A sender's and a receiver's data dirs, and the steps between them."""

    def setUp(self):
        if sys.version_info < (3, 11, 4):
            self.skipTest("needs tarfile extraction filters (Python 3.11.4+)")
        self.tmp = tempfile.TemporaryDirectory()
        self.src = os.path.join(self.tmp.name, "src")
        self.dst = os.path.join(self.tmp.name, "dst")
        os.makedirs(os.path.join(self.src, "media", "a"))
        os.makedirs(os.path.join(self.dst, "media"))
        con = sqlite3.connect(os.path.join(self.src, "db.sqlite3"))
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE django_migrations(id INTEGER PRIMARY KEY, app TEXT, name TEXT, applied TEXT)")
        con.execute("INSERT INTO django_migrations(app, name, applied) VALUES ('blog', '0001_initial', 'now')")
        con.execute("CREATE TABLE blog_post(id INTEGER PRIMARY KEY, body TEXT)")
        con.executemany("INSERT INTO blog_post(body) VALUES (?)", [(f"post {i} " + "x" * 400,) for i in range(4000)])
        con.commit()
        con.close()
        for i in range(4):
            self.write_media(f"a/f{i}.bin", os.urandom(50000 + i))

    def tearDown(self):
        self.tmp.cleanup()

    def env(self, data, **extra):
        e = dict(os.environ, BLOG_DATA_DIR=data, PYTHONPATH=os.path.join(APP, "project"),
                 PYTHONDONTWRITEBYTECODE="1", BLOG_DELTA_MIN_DB="4096")
        e.update(extra)
        return e

    def write_media(self, rel, data):
        p = os.path.join(self.src, "media", rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    def backup(self, base="", data=None):
        out = os.path.join(self.tmp.name, f"app-{len(os.listdir(self.tmp.name))}.tar")
        with open(out, "wb") as f:
            p = subprocess.run([sys.executable, "-c", BACKUP_DRIVER, BACKUP], stdout=f, stderr=subprocess.PIPE,
                               env=self.env(data or self.src, FLEET_BASE=base), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return out, p.stderr.decode()

    def restore(self, archive, data=None):
        p = subprocess.run([sys.executable, "-c", DRIVER, RESTORE, archive], capture_output=True,
                           env=self.env(data or self.dst), timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return json.loads(p.stdout)

    def state(self, data=None):
        p = subprocess.run([sys.executable, RESTORE, "--state"], capture_output=True, env=self.env(data or self.dst),
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        return p.stdout.decode().strip()

    def assertSame(self):
        self.assertEqual(rows(os.path.join(self.src, "db.sqlite3")), rows(os.path.join(self.dst, "db.sqlite3")))
        self.assertEqual(tree(os.path.join(self.src, "media")), tree(os.path.join(self.dst, "media")))

    def members(self, path):
        with tarfile.open(path) as t:
            return sorted(m.name for m in t if m.isreg())



class DeltaTest(Pair):
    def test_full_then_deltas(self):
        self.assertEqual(self.state(), "none")
        full, _ = self.backup()
        res = self.restore(full)
        self.assertEqual(res.get("ok"), "full", res)
        base = self.state()
        self.assertEqual(res["id"], base)
        self.assertSame()

        # A changed row, a new file, a changed file, a removed file.
        con = sqlite3.connect(os.path.join(self.src, "db.sqlite3"))
        con.execute("UPDATE blog_post SET body = 'changed' WHERE id = 7")
        con.commit()
        con.close()
        self.write_media("b/new.bin", b"new")
        self.write_media("a/f1.bin", os.urandom(50001))
        os.unlink(os.path.join(self.src, "media", "a", "f2.bin"))
        d, log = self.backup(base)
        self.assertIn("delta against", log)
        m = self.members(d)
        self.assertIn("db.pages", m)
        self.assertNotIn("db.sqlite3", m)
        self.assertEqual([x for x in m if x.startswith("media/")], ["media/a/f1.bin", "media/b/new.bin"])
        self.assertIn("(2 hashed)", log)  # the new and the changed file; the cache has the rest
        res = self.restore(d)
        self.assertTrue(res.get("ok", "").startswith("delta against"), res)
        self.assertSame()
        self.assertNotEqual(self.state(), base)

        # Nothing changed: an empty delta still rebuilds the same data.
        d2, log = self.backup(self.state())
        self.assertIn("(0 hashed)", log)
        self.assertEqual([x for x in self.members(d2) if x.startswith("media/")], [])
        self.assertTrue(self.restore(d2).get("ok", "").startswith("delta"))
        self.assertSame()

    def test_odd_media_is_full_without_manifest(self):
        full, _ = self.backup()
        self.restore(full)
        base = self.state()
        os.symlink("f0.bin", os.path.join(self.src, "media", "a", "link.bin"))
        with open(os.path.join(self.src.encode(), b"media", b"a", b"bad-\xff.bin"), "wb") as f:
            f.write(b"x")
        out, log = self.backup(base)
        self.assertIn("a full archive without state.json", log)
        m = self.members(out)
        self.assertIn("db.sqlite3", m)
        self.assertNotIn("state.json", m)
        self.assertNotIn("delta.json", m)

    def test_unknown_base_is_full(self):
        out, log = self.backup("f" * 64)
        self.assertIn("unknown here: a full archive", log)
        self.assertIn("db.sqlite3", self.members(out))
        self.assertNotIn("delta.json", self.members(out))

    def test_stale_base_refused(self):
        full, _ = self.backup()
        self.restore(full)
        base = self.state()
        # The receiver's media changed since its restore: no usable base.
        with open(os.path.join(self.dst, "media", "a", "f0.bin"), "ab") as f:
            f.write(b"local write")
        self.assertEqual(self.state(), "none")
        d, _ = self.backup(base)
        res = self.restore(d)
        self.assertIn("mismatch", res)

    def test_damaged_pages_fail(self):
        full, _ = self.backup()
        self.restore(full)
        con = sqlite3.connect(os.path.join(self.src, "db.sqlite3"))
        con.execute("UPDATE blog_post SET body = 'changed' WHERE id = 9")
        con.commit()
        con.close()
        d, _ = self.backup(self.state())
        # Flip a byte inside db.pages: the rebuilt database must not hash
        # to the target.
        with tarfile.open(d) as t:
            members = [(m, t.extractfile(m).read() if m.isreg() else None) for m in t]
        bad = d + ".bad"
        with tarfile.open(bad, "w", format=tarfile.GNU_FORMAT) as t:
            import io
            for m, data in members:
                if m.name == "db.pages":
                    data = data[:-1] + bytes([data[-1] ^ 1])
                t.addfile(m, io.BytesIO(data) if data is not None else None)
        res = self.restore(bad)
        # Refused as a base mismatch: fleet then sends a full archive.
        self.assertIn("does not hash to the target", res.get("mismatch", ""), res)

    def test_rollback_delta(self):
        """A promote then a rollback: the old droplet (src) keeps what it
        sent last as its base; the new one (dst), migrated and written to,
        sends a delta back that rebuilds exactly its data on src."""
        full, _ = self.backup()
        self.restore(full)
        self.write_media("a/late.bin", b"late upload")
        final, log = self.backup(self.state())
        self.assertIn("(kept as the base)", log)
        self.restore(final)
        sent = self.state()
        self.assertEqual(self.state(self.src), sent)  # src holds what it sent

        # dst after the promote: a migration (a new table, a changed row in
        # every page of blog_post would be too much: one column's default),
        # writes, an upload, a removed file.
        con = sqlite3.connect(os.path.join(self.dst, "db.sqlite3"))
        con.execute("CREATE TABLE blog_comment(id INTEGER PRIMARY KEY, body TEXT)")
        con.execute("INSERT INTO django_migrations(app, name, applied) VALUES ('blog', '0002_comment', 'now')")
        con.executemany("INSERT INTO blog_comment(body) VALUES (?)", [(f"c{i}",) for i in range(50)])
        con.execute("UPDATE blog_post SET body = 'edited' WHERE id = 3000")
        con.commit()
        con.close()
        with open(os.path.join(self.dst, "media", "a", "new.bin"), "wb") as f:
            f.write(b"uploaded after the promote")
        os.unlink(os.path.join(self.dst, "media", "a", "f3.bin"))

        back, log = self.backup(sent, data=self.dst)
        self.assertIn("delta against " + sent[:12], log)
        m = self.members(back)
        self.assertIn("db.pages", m)
        self.assertNotIn("db.sqlite3", m)
        self.assertEqual([x for x in m if x.startswith("media/")], ["media/a/new.bin"])
        res = self.restore(back, data=self.src)
        self.assertTrue(res.get("ok", "").startswith("delta against " + sent[:12]), res)
        self.assertEqual(rows(os.path.join(self.src, "db.sqlite3")), rows(os.path.join(self.dst, "db.sqlite3")))
        self.assertEqual(tree(os.path.join(self.src, "media")), tree(os.path.join(self.dst, "media")))
        con = sqlite3.connect(os.path.join(self.src, "db.sqlite3"))
        self.assertEqual(con.execute("SELECT count(*) FROM blog_comment").fetchone()[0], 50)
        con.close()

        # dst's base went to its sent manifests: a later backup still
        # knows it; an unknown id still gives a full archive.
        again, log = self.backup(sent, data=self.dst)
        self.assertIn("delta against " + sent[:12], log)
        _, log = self.backup("e" * 64, data=self.dst)
        self.assertIn("unknown here: a full archive", log)

    def test_sender_base_stale_media_refused(self):
        """A sender's kept base whose media changed since is no base: its
        state is none, and a delta against it is refused (exit 4)."""
        full, _ = self.backup()
        self.restore(full)
        sent = self.state(self.src)
        self.assertEqual(sent, self.state())
        with open(os.path.join(self.src, "media", "a", "f0.bin"), "ab") as f:
            f.write(b"changed on the sender after it sent")
        self.assertEqual(self.state(self.src), "none")
        back, _ = self.backup(sent, data=self.dst)
        self.assertIn("mismatch", self.restore(back, data=self.src))

    def outer(self, fmt, members):
        """A fleet-data archive of the given {name: bytes}."""
        import io
        lines = [f"fleet-blog-backup {fmt}"] + [f"{hashlib.sha256(b).hexdigest()}  {n}" for n, b in members.items()]
        out = os.path.join(self.tmp.name, f"outer-{len(os.listdir(self.tmp.name))}.tar")
        with tarfile.open(out, "w") as t:
            for n, b in [("MANIFEST", ("\n".join(lines) + "\n").encode())] + list(members.items()):
                info = tarfile.TarInfo(n)
                info.size = len(b)
                t.addfile(info, io.BytesIO(b))
        return out

    def verify(self, path):
        with open(path, "rb") as f:
            p = subprocess.run([sys.executable, os.path.join(APP, "bin", "blog-verify")], stdin=f, capture_output=True,
                               env=self.env(self.dst), timeout=60)
        return p.returncode, p.stdout.decode().strip()

    def test_verify(self):
        full, _ = self.backup()
        with open(full, "rb") as f:
            app = f.read()
        code, out = self.verify(self.outer(1, {"app.tar": app, "letsencrypt.tar": b"\0" * 1024}))
        self.assertEqual(code, 0, out)
        self.assertIn("media sha256 checked", out)

        # A media file whose bytes differ from state.json's sum.
        with tarfile.open(full) as t:
            members = [(m, t.extractfile(m).read() if m.isreg() else None) for m in t]
        bad = full + ".bad"
        import io
        with tarfile.open(bad, "w", format=tarfile.GNU_FORMAT) as t:
            for m, data in members:
                if m.name == "media/a/f0.bin":
                    data = bytes([data[0] ^ 1]) + data[1:]
                t.addfile(m, io.BytesIO(data) if data is not None else None)
        with open(bad, "rb") as f:
            code, out = self.verify(self.outer(1, {"app.tar": f.read(), "letsencrypt.tar": b"\0" * 1024}))
        self.assertEqual(code, 1, out)
        self.assertIn("media do not match", out)

        # A delta (format 2, certificates unchanged).
        self.restore(full)
        self.write_media("c/late.bin", b"late")
        d, _ = self.backup(self.state())
        with open(d, "rb") as f:
            code, out = self.verify(self.outer(2, {"STATE": b"base x\nletsencrypt y\n", "app.tar": f.read()}))
        self.assertEqual(code, 0, out)
        self.assertIn("a delta against", out)
        self.assertIn("1 of 5 media files sent", out)


# Runs blog-restore's main as is, but as the test's user (no chown, no
# switch to user blog); stdin is the archive.
MAIN_DRIVER = r'''
import runpy, sys
from blogops import common
common.drop_privileges = lambda: None
common.prepare_dirs = lambda **k: None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''


class LazyBase(Pair):
    """A receiver holding a base, a delta for it, and blog-restore's main
    run with BLOG_RESTORE_DJANGO=lazy (fleet-data's delta). A stand-in
    django package that refuses to import tells whether it tried."""

    def setUp(self):
        super().setUp()
        fake = os.path.join(self.tmp.name, "fake", "django")
        os.makedirs(fake)
        with open(os.path.join(fake, "__init__.py"), "w") as f:
            f.write("raise ImportError('test: Django was imported')\n")
        self.known = os.path.join(self.tmp.name, "known-migrations")
        # The receiver holds a base; the sender then changes a row.
        full, _ = self.backup()
        self.restore(full)
        con = sqlite3.connect(os.path.join(self.src, "db.sqlite3"))
        con.execute("UPDATE blog_post SET body = 'after the base' WHERE id = 3")
        con.commit()
        con.close()
        self.delta, _ = self.backup(self.state())
        self.before = rows(os.path.join(self.dst, "db.sqlite3"))

    def main(self, known=None, **env):
        if known is not None:
            with open(self.known, "w") as f:
                f.write("".join(k + "\n" for k in known))
        e = self.env(self.dst, **dict({"BLOG_KNOWN_MIGRATIONS": self.known, "BLOG_RESTORE_DJANGO": "lazy"}, **env))
        e["PYTHONPATH"] = os.path.join(self.tmp.name, "fake") + ":" + e["PYTHONPATH"]
        with open(self.delta, "rb") as f:
            p = subprocess.run([sys.executable, "-c", MAIN_DRIVER, RESTORE], stdin=f, capture_output=True, env=e, timeout=60)
        return p.returncode, p.stderr.decode()



class LazyDjangoTest(LazyBase):
    """A delta with nothing to migrate never starts Django."""

    def test_delta_without_pending_migrations(self):
        code, log = self.main(["blog.0001_initial"])
        self.assertEqual(code, 0, log)
        self.assertIn("Django not started", log)
        self.assertSame()

    def test_pending_migration_starts_django(self):
        code, log = self.main(["blog.0001_initial", "blog.0002_more"])
        self.assertEqual(code, 1, log)
        self.assertIn("Django was imported", log)
        # Started before the swap: the live data is untouched.
        self.assertEqual(rows(os.path.join(self.dst, "db.sqlite3")), self.before)
        # Failed after the next base was staged: no copy of it is left.
        self.assertEqual(leftovers(self.dst), [])

    def test_killed_restore_stages_swept(self):
        old, fresh = os.path.join(self.dst, ".restore-old"), os.path.join(self.dst, ".restore-fresh")
        for d in (old, fresh):
            os.makedirs(os.path.join(d, ".base-x"))
        day = time.time() - 24 * 3600 - 60
        os.utime(old, (day, day))
        code, log = self.main(["blog.0001_initial"])
        self.assertEqual(code, 0, log)
        self.assertIn("removed .restore-old", log)
        self.assertEqual(leftovers(self.dst), [".restore-fresh"])

    def test_no_list_asks_django(self):
        code, log = self.main()
        self.assertEqual(code, 1, log)
        self.assertIn("Django was imported", log)
        self.assertEqual(rows(os.path.join(self.dst, "db.sqlite3")), self.before)

    def test_unknown_migration_refused_without_django(self):
        code, log = self.main(["other.0001_initial"])
        self.assertEqual(code, 3, log)
        self.assertIn("does not know: blog.0001_initial", log)
        self.assertNotIn("Django was imported", log)

    def test_eager_starts_django_first(self):
        code, log = self.main(["blog.0001_initial"], BLOG_RESTORE_DJANGO="eager")
        self.assertEqual(code, 1, log)
        self.assertIn("Django was imported", log)


# A stand-in Django that works as far as blog-restore uses it: setup, the
# migration loader (STUB_KNOWN's list) and call_command, which says what
# it ran on the stream it is given.
STUB_DJANGO = {
    "django/__init__.py": "def setup():\n    pass\n",
    "django/db/__init__.py": "class _C:\n    def close_all(self):\n        pass\n\n\nconnections = _C()\n",
    "django/db/migrations/__init__.py": "",
    "django/db/migrations/loader.py": (
        "import os\n\n\nclass MigrationLoader:\n    def __init__(self, connection, ignore_no_migrations=False):\n"
        "        with open(os.environ['STUB_KNOWN']) as f:\n"
        "            self.disk_migrations = {tuple(l.strip().split('.', 1)): None for l in f if l.strip()}\n"),
    "django/core/__init__.py": "",
    "django/core/management/__init__.py": (
        "import sys\n\n\ndef call_command(name, *args, **kw):\n"
        "    print('stub ' + name, file=kw.get('stdout') or sys.stdout, flush=True)\n"),
    "django/core/management/commands/__init__.py": "",
    "django/core/management/commands/migrate.py": "",
}


class HelperTest(LazyBase):
    """blog-restore --serve: a warm helper restores the next archive a plain
    blog-restore hands it; the plain one never starts Django itself."""

    def setUp(self):
        super().setUp()
        self.ok = os.path.join(self.tmp.name, "stub")
        for rel, text in STUB_DJANGO.items():
            os.makedirs(os.path.dirname(os.path.join(self.ok, rel)), exist_ok=True)
            with open(os.path.join(self.ok, rel), "w") as f:
                f.write(text)
        with open(self.known, "w") as f:
            f.write("blog.0001_initial\nblog.0002_more\n")  # one pending: the helper migrates
        self.sock = os.path.join(self.dst, ".restore.sock")

    def helper(self, **env):
        e = self.env(self.dst, BLOG_KNOWN_MIGRATIONS=self.known, STUB_KNOWN=self.known, **env)
        e["PYTHONPATH"] = self.ok + ":" + e["PYTHONPATH"]
        p = subprocess.Popen([sys.executable, "-c", MAIN_DRIVER, RESTORE, "--serve"], env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(p.stderr.close)
        self.addCleanup(p.stdout.close)
        self.addCleanup(p.kill)
        return p

    def wait_sock(self, p):
        for _ in range(200):
            if os.path.exists(self.sock):
                return
            if p.poll() is not None:
                self.fail(f"helper exited {p.returncode}: {p.stderr.read().decode()}")
            time.sleep(0.05)
        self.fail("no helper socket after 10 s")

    def test_helper_restores_and_migrates(self):
        p = self.helper()
        self.wait_sock(p)
        code, log = self.main()  # its own Django refuses to import
        self.assertEqual(code, 0, log)
        self.assertIn("a warm helper restores this archive", log)
        self.assertIn("stub migrate", log)
        self.assertIn("1 applied now", log)
        self.assertIn("in the warm helper", log)
        self.assertNotIn("Django was imported", log)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertFalse(os.path.exists(self.sock))  # one archive only
        self.assertSame()

    def test_helper_answers_with_unread_input(self):
        # The stream goes on after the tar's end (padding, here 4 MiB): the
        # helper reads none of it, yet its answer must arrive (closing a
        # socket with unread input resets the connection).
        with open(self.delta, "ab") as f:
            f.write(b"\0" * (4 << 20))
        p = self.helper()
        self.wait_sock(p)
        code, log = self.main()
        self.assertEqual(code, 0, log)
        self.assertIn("in the warm helper", log)
        self.assertNotIn("Traceback", log)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertSame()

    def test_helper_failure_is_relayed(self):
        p = self.helper()
        self.wait_sock(p)
        # A damaged archive: the helper's failure comes back as the exit status.
        with open(self.delta, "r+b") as f:
            f.seek(600)
            f.write(b"\xff" * 64)
        code, log = self.main()
        self.assertIn(code, (1, 4), log)  # 4: the damage hit the pages (a full archive follows)
        self.assertIn("a warm helper restores this archive", log)
        self.assertEqual(p.wait(timeout=10), code)
        self.assertEqual(rows(os.path.join(self.dst, "db.sqlite3")), self.before)

    def test_restore_waits_for_a_warming_helper(self):
        # The restore starts while the helper still warms up (here: its
        # Django takes 1 s to set up): it waits for it, never starts its own.
        with open(os.path.join(self.ok, "django", "__init__.py"), "w") as f:
            f.write("import time\n\n\ndef setup():\n    time.sleep(1)\n")
        p = self.helper()
        for _ in range(200):
            if os.path.exists(os.path.join(self.dst, ".restore.starting")):
                break
            time.sleep(0.02)
        self.assertFalse(os.path.exists(self.sock))
        code, log = self.main()
        self.assertEqual(code, 0, log)
        self.assertIn("in the warm helper", log)
        self.assertEqual(p.wait(timeout=10), 0)
        self.assertFalse(os.path.exists(os.path.join(self.dst, ".restore.starting")))
        self.assertSame()

    def test_dead_helper_pid_restores_here(self):
        with open(os.path.join(self.dst, ".restore.starting"), "w") as f:
            f.write("999999\n")  # no such process
        code, log = self.main(["blog.0001_initial"])
        self.assertEqual(code, 0, log)
        self.assertIn("Django not started", log)

    def test_helper_gives_up(self):
        p = self.helper(BLOG_RESTORE_HELPER_WAIT="0.3")
        self.assertEqual(p.wait(timeout=20), 0)
        self.assertFalse(os.path.exists(self.sock))

    def test_stale_socket_restores_here(self):
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.sock)
        s.close()  # the path stays, nobody listens
        code, log = self.main(["blog.0001_initial"])
        self.assertEqual(code, 0, log)
        self.assertNotIn("warm helper", log)
        self.assertIn("Django not started", log)
        self.assertSame()


if __name__ == "__main__":
    unittest.main()
