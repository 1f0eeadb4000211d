"""spamworker: the anti-spam worker (the `worker` service runs it through
blog-worker). Every second, unless /run/fleet-flags/readonly exists (then
it pauses), it sends pending comments, oldest first, to an Akismet-compatible
API ($AKISMET_URL/1.1/comment-check): "true" -> held, "false" -> approved
and a notification mail to ADMIN_EMAIL, "invalid" -> left pending (bad key),
network errors -> retried on the next round. Database work happens under
the SHARED write lock, like a request's, so a freeze waits for it; no
WriteJournal rows (these are not user writes). Exits promptly on SIGTERM.
"""
import contextlib
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.core.mail import send_mail
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from blogops import common
from blogsite.release import RELEASE

from ...models import Comment

log = logging.getLogger("blog.spamworker")

HEARTBEAT = "/tmp/blog-worker.alive"
HTTP_TIMEOUT = 10
BATCH = 20


class Stop(Exception):
    pass


class Worker:
    def __init__(self, api, key, blog):
        self.api = api
        self.key = key
        self.blog = blog
        self.stopping = False
        self.critical = 0
        self.paused = False
        self.last_trouble = (None, 0.0)

    def trouble(self, kind, level, msg, *args):
        """Logs a recurring problem when it first shows and then once a
        minute, not every second."""
        now = time.monotonic()
        last_kind, last_at = self.last_trouble
        if kind != last_kind or now - last_at >= 60:
            log.log(level, msg, *args)
            self.last_trouble = (kind, now)

    def no_trouble(self):
        if self.last_trouble[0] is not None:
            log.info("akismet answers again")
            self.last_trouble = (None, 0.0)

    # -- signals: exit at once, except inside a locked database section,
    # which is short; it ends first.
    def on_signal(self, signum, frame):
        self.stopping = True
        if self.critical == 0:
            raise Stop()

    @contextlib.contextmanager
    def locked(self):
        self.critical += 1
        try:
            with common.write_lock():
                try:
                    yield
                finally:
                    connection.close()  # no sqlite handle outlives the lock
        finally:
            self.critical -= 1
            if self.stopping and self.critical == 0:
                raise Stop()

    def sleep(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(max(0.0, min(0.1, deadline - time.monotonic())))
        if self.stopping:
            raise Stop()

    def beat(self):
        with open(HEARTBEAT, "w"):
            pass

    # -- Akismet
    def call(self, method, fields):
        data = urllib.parse.urlencode(fields).encode()
        req = urllib.request.Request(
            f"{self.api}/1.1/{method}", data=data, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                     "User-Agent": f"fleet-blog/{RELEASE} | spamworker/1"})
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.read(200).decode("utf-8", "replace").strip(), resp.headers

    def verify_key(self):
        try:
            answer, _ = self.call("verify-key", {"key": self.key, "api_key": self.key, "blog": self.blog})
        except (urllib.error.URLError, OSError) as e:
            log.warning("akismet verify-key failed: %s (comments stay pending until %s answers)", e, self.api)
            return
        if answer == "valid":
            log.info("akismet key valid")
        else:
            log.error("akismet key invalid (verify-key answered %r)", answer)

    def check(self, c):
        fields = {
            "api_key": self.key,
            "blog": self.blog,
            "blog_charset": "UTF-8",
            "user_ip": c.user_ip,
            "user_agent": c.user_agent,
            "permalink": self.blog.rstrip("/") + c.post.get_absolute_url(),
            "comment_type": "comment",
            "comment_author": c.author,
            "comment_author_email": c.email,
            "comment_content": c.body,
            "comment_date_gmt": c.created.isoformat(),
        }
        return self.call("comment-check", fields)

    # -- the loop
    def wait_for_schema(self):
        said = False
        while True:
            self.beat()
            try:
                if os.path.exists(common.DB_PATH):
                    with self.locked():
                        executor = MigrationExecutor(connection)
                        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
                    if not plan:
                        return
            except Stop:
                raise
            except Exception as e:  # noqa: BLE001
                log.debug("schema check: %s", e)
            if not said:
                log.info("waiting for the app to migrate the database")
                said = True
            self.sleep(1)

    def frozen(self):
        if common.is_frozen():
            if not self.paused:
                log.info("paused: the site is read-only")
                self.paused = True
            return True
        if self.paused:
            log.info("resumed")
            self.paused = False
        return False

    def round(self):
        if self.frozen():
            return
        with self.locked():
            if common.is_frozen():
                return
            pending = list(Comment.objects.filter(status=Comment.PENDING)
                           .select_related("post").order_by("created", "id")[:BATCH])
        for c in pending:
            if self.stopping or self.frozen():
                return
            try:
                answer, headers = self.check(c)
            except (urllib.error.URLError, OSError) as e:
                self.trouble("network", logging.WARNING,
                             "akismet comment-check failed: %s; retrying every second", e)
                return
            if answer == "invalid":
                self.trouble("invalid", logging.ERROR,
                             "akismet key invalid (%s); comments stay pending",
                             headers.get("X-akismet-debug-help", "no help"))
                return
            if answer not in ("true", "false"):
                self.trouble("answer", logging.ERROR,
                             "akismet answered %r for comment %d; it stays pending", answer[:80], c.id)
                continue
            self.no_trouble()
            status = Comment.HELD if answer == "true" else Comment.APPROVED
            with self.locked():
                if common.is_frozen():
                    return
                changed = Comment.objects.filter(pk=c.pk, status=Comment.PENDING).update(
                    status=status, checked_at=timezone.now())
            if not changed:
                continue
            log.info("comment %d on %s: %s", c.id, c.post.slug, status)
            if status == Comment.APPROVED:
                self.notify(c)

    def notify(self, c):
        subject = f"New comment on {c.post.title}"
        body = (f"{c.author} <{c.email}> commented on \"{c.post.title}\":\n\n{c.body}\n\n"
                f"{self.blog.rstrip('/')}{c.post.get_absolute_url()}#comment-{c.id}\n")
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [settings.ADMIN_EMAIL])
            log.info("mailed %s about comment %d", settings.ADMIN_EMAIL, c.id)
        except Exception as e:  # noqa: BLE001 - the mail is best effort
            log.error("cannot mail %s about comment %d: %s", settings.ADMIN_EMAIL, c.id, e)

    def run(self):
        self.verify_key()
        self.wait_for_schema()
        log.info("checking pending comments every second")
        while True:
            self.beat()
            try:
                self.round()
            except Stop:
                raise
            except Exception:  # noqa: BLE001 - log, keep going
                log.exception("round failed")
            self.sleep(1)


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args, **options):
        api = os.environ.get("AKISMET_URL", "").strip() or "https://rest.akismet.com"
        key = common.secret("akismet_key")
        if not key:
            log.error("no akismet_key secret (%s/akismet_key)", common.SECRETS_DIR)
            sys.exit(1)
        worker = Worker(api.rstrip("/"), key, f"https://{settings.SITE_DOMAIN}/")
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, worker.on_signal)
        log.info("spamworker %s: Akismet API %s, blog %s", RELEASE, worker.api, worker.blog)
        try:
            worker.run()
        except Stop:
            log.info("stopping")
