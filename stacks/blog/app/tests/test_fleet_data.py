"""utility/fleet-data's backup, restore and state with a stub docker on
PATH (no Docker needed):

    python3 -m unittest discover -s stacks/blog/app/tests

The stub answers `docker ps`/`inspect` with one container per service and
runs `docker exec` of the app's and certbot's commands as small scripts
over files in a scratch dir, so the tests see what fleet-data sends where.
"""
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import unittest

UTIL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "utility")

STUB = r'''#!/bin/sh
# stub docker: $STUB_DIR holds app.tar (what blog-backup writes), le.tar
# (certbot-backup), restore.code (blog-restore's exit), state (its --state).
case $1 in
inspect) echo inspect >>"$STUB_DIR/lookups"; echo proj; exit 0 ;;
ps)
	echo ps >>"$STUB_DIR/lookups"
	case "$*" in
	*--format*)
		# This container first (fleet-data finds its project by its id),
		# then another project's app, then this project's services.
		self=$(sed -n 's|.*/containers/\([0-9a-f]\{64\}\)/hostname .*|\1|p' /proc/self/mountinfo | head -n 1)
		echo "${STUB_SELF_ID:-${self:-$(hostname)}} proj utility"
		echo "c-other other app"
		for s in app certbot nginx gate; do echo "c-$s proj $s"; done ;;
	*) for a; do case $a in *service=*) echo "c-${a#*service=}";; esac; done ;;
	esac
	exit 0 ;;
exec) shift ;;
*) echo "stub docker: $*" >&2; exit 9 ;;
esac
env=
while :; do
	case $1 in
	-i | -d) shift ;;
	-e) env="$env $2"; shift 2 ;;
	*) break ;;
	esac
done
c=$1; shift
echo "$c $* [$env ]" >>"$STUB_DIR/calls"
case "$c $*" in
"c-app blog-backup") sleep "${STUB_SLOW:-0}"; cat "$STUB_DIR/app.tar" ;;
"c-certbot certbot-backup") sleep "${STUB_SLOW:-0}"; cat "$STUB_DIR/le.tar"; exit $(cat "$STUB_DIR/le.code" 2>/dev/null || echo 0) ;;
"c-app blog-restore --state") cat "$STUB_DIR/state" ;;
"c-app blog-restore") cat >"$STUB_DIR/restored-app.tar"; exit $(cat "$STUB_DIR/restore.code" 2>/dev/null || echo 0) ;;
"c-certbot certbot-restore") cat >"$STUB_DIR/restored-le.tar" ;;
"c-nginx blog-tls reload") echo reloaded >&2 ;;
"c-app blog-drain") echo "blog-drain: drained in 0.001 s" >&2 ;;
"c-app blog-restore --serve") ;;
*) echo "stub docker exec: unknown $c $*" >&2; exit 9 ;;
esac
'''


def sha(b):
    return hashlib.sha256(b).hexdigest()


class FleetDataTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.stub = os.path.join(self.tmp, "stub")
        self.bin = os.path.join(self.tmp, "bin")
        os.makedirs(self.stub)
        os.makedirs(self.bin)
        with open(os.path.join(self.bin, "docker"), "w") as f:
            f.write(STUB)
        os.chmod(os.path.join(self.bin, "docker"), 0o755)
        lib = os.path.join(self.tmp, "lib.sh")
        with open(os.path.join(UTIL, "fleet-data-lib.sh")) as f:
            text = f.read().replace("/run/fleet-flags", self.tmp + "/flags").replace("/var/backups/blog", self.tmp + "/backups")
        with open(lib, "w") as f:
            f.write(text)
        with open(os.path.join(UTIL, "fleet-data")) as f:
            text = f.read().replace("/usr/local/lib/fleet-data-lib.sh", lib)
        self.fd = os.path.join(self.bin, "fleet-data")
        with open(self.fd, "w") as f:
            f.write(text)
        os.chmod(self.fd, 0o755)
        self.put("app.tar", b"APP" * 1000)
        self.put("le.tar", b"LE" * 100)
        self.put("state", b"a" * 64 + b"\n")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def put(self, name, data):
        with open(os.path.join(self.stub, name), "wb") as f:
            f.write(data)

    def get(self, name):
        try:
            with open(os.path.join(self.stub, name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def fd_env(self, stub, root, **env):
        """fleet-data's environment over the stub in stub, its files in
        root: no write lock unless a test makes one (blog-drain through the
        stub), no certificates' mount (certbot-backup through the stub)."""
        e = dict(os.environ, PATH=self.bin + ":" + os.environ["PATH"], STUB_DIR=stub, COMPOSE_PROJECT_NAME="proj",
                 FLEET_WRITE_LOCK=os.path.join(root, "no-write-lock"),
                 FLEET_LOOKUP_CACHE=os.path.join(root, "lookup-cache"),
                 FLEET_LETSENCRYPT=os.path.join(root, "no-letsencrypt-mount"))
        e.update(env)
        return e

    def run_fd(self, *args, stdin=b"", **env):
        e = self.fd_env(self.stub, self.tmp, **env)
        return subprocess.run([self.fd, *args], input=stdin, capture_output=True, env=e, timeout=30)

    def members(self, data):
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            return {m.name: t.extractfile(m).read() for m in t}

    def test_full_round_trip_records_state(self):
        # Nothing restored yet: its own certificates' tar.
        self.assertEqual(self.run_fd("state").stdout.decode().strip(), "a" * 64 + "-" + sha(b"LE" * 100))
        self.put("state", b"none\n")
        self.assertEqual(self.run_fd("state").stdout.decode().strip(), "none")
        self.put("state", b"a" * 64 + b"\n")
        b = self.run_fd("backup")
        self.assertEqual(b.returncode, 0, b.stderr)
        m = self.members(b.stdout)
        self.assertTrue(m["MANIFEST"].startswith(b"fleet-blog-backup 1\n"))
        r = self.run_fd("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.get("restored-app.tar"), b"APP" * 1000)
        # A full archive: blog-restore starts Django while it arrives.
        self.assertIn("c-app blog-restore [ BLOG_RESTORE_DJANGO=eager ]", self.get("calls").decode())
        self.assertEqual(self.get("restored-le.tar"), b"LE" * 100)
        self.assertEqual(self.run_fd("state").stdout.decode().strip(), "a" * 64 + "-" + sha(b"LE" * 100))

    def test_delta_without_certificates(self):
        base = "b" * 64 + "-" + sha(b"LE" * 100)
        b = self.run_fd("backup", FLEET_BASE=base)
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertIn(f"c-app blog-backup [ FLEET_BASE={'b' * 64} ]", self.get("calls").decode())
        m = self.members(b.stdout)
        self.assertEqual(sorted(m), ["MANIFEST", "STATE", "app.tar"])
        self.assertTrue(m["MANIFEST"].startswith(b"fleet-blog-backup 2\n"))

        # The receiver holds other certificates: exit 4, nothing restored.
        self.put("le.tar", b"OTHER")
        r = self.run_fd("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertFalse(self.get("restored-app.tar"))  # blog-restore got no archive

        # After a full restore it holds these: the delta applies, with no
        # certbot-restore and no nginx reload, though its certbot-backup
        # gives other bytes (another droplet's tar of the same files).
        self.put("le.tar", b"LE" * 100)
        full = self.run_fd("backup").stdout
        self.put("le.tar", b"OTHER BYTES")
        self.run_fd("restore", stdin=full)
        self.assertEqual(self.run_fd("state").stdout.decode().strip(), "a" * 64 + "-" + sha(b"LE" * 100))
        os.unlink(os.path.join(self.stub, "restored-le.tar"))
        open(os.path.join(self.stub, "calls"), "w").close()
        r = self.run_fd("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIsNone(self.get("restored-le.tar"))
        self.assertNotIn("blog-tls", self.get("calls").decode())
        self.assertIn(b"certificates unchanged", r.stderr)

        # A renewal since the restore: the certificates' own tar again.
        self.put("le.tar", b"RENEWED")
        self.assertEqual(self.run_fd("state").stdout.decode().strip(), "a" * 64 + "-" + sha(b"RENEWED"))
        r = self.run_fd("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 4, r.stderr)

    def test_delta_with_changed_certificates(self):
        base = "b" * 64 + "-" + "c" * 64
        b = self.run_fd("backup", FLEET_BASE=base)
        m = self.members(b.stdout)
        self.assertEqual(sorted(m), ["MANIFEST", "STATE", "app.tar", "letsencrypt.tar"])
        r = self.run_fd("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.get("restored-le.tar"), b"LE" * 100)
        # A delta: blog-restore starts Django only if it must.
        self.assertIn("c-app blog-restore [ BLOG_RESTORE_DJANGO=lazy ]", self.get("calls").decode())
        self.assertEqual(self.get("restored-app.tar"), b"APP" * 1000)  # the whole stream, after the peek

    def test_warm_helper_after_a_pre_sync(self):
        # A delta onto a writable droplet (a pre-sync): a warm blog-restore
        # is started for the final sync. Frozen (the final sync itself) or
        # a full archive (up): none.
        b = self.run_fd("backup", FLEET_BASE="b" * 64 + "-" + "c" * 64)
        cases = (("delta, writable", b.stdout, False, True), ("delta, frozen", b.stdout, True, False),
                 ("full", self.run_fd("backup").stdout, False, False))
        for name, archive, frozen, want in cases:
            with self.subTest(name):
                open(os.path.join(self.stub, "calls"), "w").close()
                os.makedirs(os.path.join(self.tmp, "flags"), exist_ok=True)
                flag = os.path.join(self.tmp, "flags", "readonly")
                if frozen:
                    open(flag, "w").close()
                elif os.path.exists(flag):
                    os.unlink(flag)
                r = self.run_fd("restore", stdin=archive)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual("c-app blog-restore --serve" in self.get("calls").decode(), want, self.get("calls"))

    def test_backup_runs_app_and_certbot_at_once(self):
        # Each takes 2 s here: together well under 4 s, with room for a
        # busy machine's process starts.
        import time
        t0 = time.monotonic()
        b = self.run_fd("backup", STUB_SLOW="2")
        took = time.monotonic() - t0
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertLess(took, 3.6, "blog-backup and certbot-backup ran one after the other")
        self.assertEqual(self.members(b.stdout)["letsencrypt.tar"], b"LE" * 100)

    def test_backup_tars_the_mounted_certificates(self):
        # With the volume mounted, fleet-data's tar is certbot-backup's,
        # byte for byte (the names a rollback compares stay the same), and
        # the certbot container is not asked.
        le = os.path.join(self.tmp, "le")
        os.makedirs(os.path.join(le, "archive", "x.test"))
        os.makedirs(os.path.join(le, "live", "x.test"))
        os.makedirs(os.path.join(le, ".fleet-restore-1"))
        for name, mode in (("fullchain1.pem", 0o644), ("privkey1.pem", 0o600)):
            path = os.path.join(le, "archive", "x.test", name)
            with open(path, "w") as f:
                f.write(name * 20)
            os.chmod(path, mode)
            os.symlink("../../archive/x.test/" + name, os.path.join(le, "live", "x.test", name.replace("1", "")))
        with open(os.path.join(le, ".fleet-restore-1", "half"), "w") as f:
            f.write("a restore in progress")
        with open(os.path.join(os.path.dirname(UTIL), "certbot", "certbot-backup")) as f:
            script = f.read().replace("/etc/letsencrypt", le)
        want = subprocess.run(["sh", "-c", script], capture_output=True, timeout=30)
        self.assertEqual(want.returncode, 0, want.stderr)
        b = self.run_fd("backup", FLEET_LETSENCRYPT=le)
        self.assertEqual(b.returncode, 0, b.stderr)
        got = self.members(b.stdout)["letsencrypt.tar"]
        self.assertEqual(got, want.stdout)
        with tarfile.open(fileobj=io.BytesIO(got)) as t:
            names = t.getnames()
        self.assertIn("./live/x.test/privkey.pem", names)
        self.assertFalse([n for n in names if "fleet-restore" in n], names)
        self.assertNotIn("certbot-backup", self.get("calls").decode())
        self.assertEqual(self.run_fd("state", FLEET_LETSENCRYPT=le).stdout.decode().strip(), "a" * 64 + "-" + sha(got))

    def test_backup_fails_with_certbot(self):
        self.put("le.code", b"5")
        b = self.run_fd("backup")
        self.assertEqual(b.returncode, 1, b.stderr)
        self.assertIn(b"certbot-backup in the certbot container exited 5", b.stderr)
        self.assertEqual(b.stdout, b"")

    def app_started_before_the_archive(self, archive):
        """Whether restore starts blog-restore before any byte arrives."""
        import time
        open(os.path.join(self.stub, "calls"), "w").close()
        e = self.fd_env(self.stub, self.tmp)
        p = subprocess.Popen([self.fd, "restore"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        time.sleep(1.5)
        early = "c-app blog-restore [" in self.get("calls").decode()
        out, err = p.communicate(archive, timeout=30)
        self.assertEqual(p.returncode, 0, err)
        return early

    def test_due_helper_starts_blog_restore_at_once(self):
        # After a pre-sync started a helper, the next restore starts
        # blog-restore before the archive arrives (the helper takes it);
        # else only once MANIFEST says the format.
        b = self.run_fd("backup", FLEET_BASE="b" * 64 + "-" + "c" * 64).stdout
        self.assertFalse(self.app_started_before_the_archive(b))  # no helper yet; this one starts one
        self.assertTrue(os.path.exists(os.path.join(self.tmp, "backups", ".fleet-state", "helper")))
        self.assertTrue(self.app_started_before_the_archive(b))
        # A stale record (the helper gave up) does not count.
        with open(os.path.join(self.tmp, "backups", ".fleet-state", "helper"), "w") as f:
            f.write("1000\n")
        self.assertFalse(self.app_started_before_the_archive(b))

    def test_app_exit_4_passed_on(self):
        self.put("restore.code", b"4")
        b = self.run_fd("backup", FLEET_BASE="b" * 64 + "-" + "c" * 64)
        r = self.run_fd("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIsNone(self.get("restored-le.tar"))

    def droplet(self, name):
        """A second droplet: its own fleet-data (backups dir) and stub dir;
        returns run(*args, stdin=b"", **env) and put(name, data)."""
        root = os.path.join(self.tmp, name)
        stub = os.path.join(root, "stub")
        os.makedirs(stub)
        with open(os.path.join(self.tmp, "lib.sh")) as f:
            text = f.read().replace(self.tmp + "/backups", root + "/backups")
        with open(os.path.join(root, "lib.sh"), "w") as f:
            f.write(text)
        with open(self.fd) as f:
            text = f.read().replace(os.path.join(self.tmp, "lib.sh"), os.path.join(root, "lib.sh"))
        fd = os.path.join(root, "fleet-data")
        with open(fd, "w") as f:
            f.write(text)
        os.chmod(fd, 0o755)

        def run(*args, stdin=b"", **env):
            e = self.fd_env(stub, root, **env)
            return subprocess.run([fd, *args], input=stdin, capture_output=True, env=e, timeout=30)

        def put(n, data):
            with open(os.path.join(stub, n), "wb") as f:
                f.write(data)
        put("app.tar", b"APP" * 1000)
        put("state", b"a" * 64 + b"\n")
        return run, put, stub

    def test_rollback_keeps_certificates(self):
        """A promote from P to C carries P's certificates; the rollback's
        delta from C back to P must not carry them again (certbot-restore
        and an nginx reload inside the freeze): P names its certificates
        as it last sent them, which is what C restored."""
        p_run, p_put, p_stub = self.droplet("p")
        c_run, c_put, c_stub = self.droplet("c")
        p_put("le.tar", b"LE-P")
        # P got its certificates from an older droplet O: it calls them
        # by the name of O's tar.
        os.makedirs(os.path.join(self.tmp, "p", "backups", ".fleet-state"))
        with open(os.path.join(self.tmp, "p", "backups", ".fleet-state", "letsencrypt"), "w") as f:
            f.write("d" * 64 + " " + sha(b"LE-P") + "\n")
        c_put("le.tar", b"PLACEHOLDER-C")

        # The promote: pre-sync, then the final delta.
        state = c_run("state").stdout.decode().strip()
        b = p_run("backup", FLEET_BASE=state)
        self.assertIn("letsencrypt.tar", self.members(b.stdout))
        c_put("le.tar", b"LE-P as C's certbot-backup tars it")
        self.assertEqual(c_run("restore", stdin=b.stdout).returncode, 0)
        state = c_run("state").stdout.decode().strip()
        self.assertEqual(state, "a" * 64 + "-" + sha(b"LE-P"))
        b = p_run("backup", FLEET_BASE=state)
        self.assertNotIn("letsencrypt.tar", self.members(b.stdout))
        r = c_run("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 0, r.stderr)

        # The rollback: P's state, then C's delta back.
        state = p_run("state").stdout.decode().strip()
        self.assertEqual(state, "a" * 64 + "-" + sha(b"LE-P"))
        b = c_run("backup", FLEET_BASE=state)
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertNotIn("letsencrypt.tar", self.members(b.stdout))
        r = p_run("restore", stdin=b.stdout)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"certificates unchanged", r.stderr)
        with open(os.path.join(p_stub, "calls")) as f:
            self.assertNotIn("blog-tls", f.read())

        # A renewal on C since: the rollback carries them.
        c_put("le.tar", b"RENEWED ON C")
        b = c_run("backup", FLEET_BASE=state)
        self.assertIn("letsencrypt.tar", self.members(b.stdout))

    def test_one_lookup_per_run(self):
        # The containers are looked up once per run (one docker ps),
        # however many a command reaches, and the runs that follow within
        # two minutes reuse it: each lookup is a docker CLI start inside
        # the freeze window.
        def lookups(cmd, stdin=b""):
            open(os.path.join(self.stub, "lookups"), "w").close()
            r = self.run_fd(cmd, stdin=stdin)
            self.assertEqual(r.returncode, 0, r.stderr)
            return (self.get("lookups") or b"").decode().split()

        self.assertEqual(lookups("backup"), ["ps"])
        b = self.run_fd("backup", FLEET_BASE="b" * 64 + "-" + "c" * 64)
        self.assertEqual(b.returncode, 0, b.stderr)
        for cmd, stdin in (("restore", b.stdout), ("freeze", b""), ("state", b""), ("backup", b""), ("unfreeze", b"")):
            with self.subTest(cmd=cmd):
                self.assertEqual(lookups(cmd, stdin), [], cmd)
        # A lookup older than two minutes is made again.
        cache = os.path.join(self.tmp, "lookup-cache")
        old = time.time() - 200
        os.utime(cache, (old, old))
        self.assertEqual(lookups("state"), ["ps"])
        # A run that fails drops it (a stale id may be why).
        self.assertEqual(self.run_fd("backup", FLEET_BASE="x; reboot").returncode, 1)
        self.assertFalse(os.path.exists(cache))
        self.assertEqual(lookups("state"), ["ps"])

    def test_drain_takes_the_write_lock(self):
        # With the app's data volume mounted, freeze waits for the writes
        # in flight on their lock itself: no docker exec, no lookup.
        lock = os.path.join(self.tmp, ".write.lock")
        open(lock, "w").close()
        writer = subprocess.Popen(["flock", "-s", lock, "sleep", "3"])
        try:
            # The write is in flight once an exclusive try fails.
            deadline = time.monotonic() + 2
            while subprocess.run(["flock", "-n", "-x", lock, "true"]).returncode == 0:
                self.assertLess(time.monotonic(), deadline, "the writer never took the lock")
                time.sleep(0.02)
            open(os.path.join(self.stub, "lookups"), "w").close()
            start = time.monotonic()
            r = self.run_fd("freeze", FLEET_WRITE_LOCK=lock)
            took = time.monotonic() - start
        finally:
            writer.wait()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(took, 0.3, "freeze did not wait for the write in flight")
        self.assertIn(b"the write lock, taken here", r.stderr)
        self.assertNotIn("blog-drain", (self.get("calls") or b"").decode())
        self.assertFalse(self.get("lookups"))
        self.assertEqual(self.run_fd("status").stdout.strip(), b"frozen")

    def test_project_not_found_by_id(self):
        # This container is not in the list (not started by compose, or an
        # id it cannot tell): its labels name the project, as before.
        open(os.path.join(self.stub, "lookups"), "w").close()
        r = self.run_fd("freeze", STUB_SELF_ID="f" * 64)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.get("lookups").decode().split(), ["ps", "inspect"])
        self.assertIn("c-app blog-drain", self.get("calls").decode())

    def test_missing_service(self):
        # A service that is not running is named, as before the cache.
        with open(os.path.join(self.bin, "docker"), "w") as f:
            f.write(STUB.replace("for s in app certbot nginx gate", "for s in certbot nginx gate"))
        r = self.run_fd("freeze")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no running app container in compose project proj", r.stderr)

    def test_bad_inputs(self):
        r = self.run_fd("backup", FLEET_BASE="x; reboot")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"not an id", r.stderr)
        b = self.run_fd("backup", FLEET_BASE="b" * 64 + "-" + "c" * 64)
        m = self.members(b.stdout)
        # A damaged member: refused before anything is restored.
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            for n, data in m.items():
                if n == "app.tar":
                    data = data[:-1] + b"X"
                info = tarfile.TarInfo(n)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        r = self.run_fd("restore", stdin=out.getvalue())
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"checksum mismatch", r.stderr)
        self.assertFalse(self.get("restored-app.tar"))  # blog-restore got no archive


if __name__ == "__main__":
    unittest.main()
