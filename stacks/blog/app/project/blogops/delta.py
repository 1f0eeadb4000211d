"""Content manifests and deltas for fleet's incremental final sync: plain
Python (no Django), shared by blog-backup, blog-restore and blog-verify.

A manifest is the content of an app.tar: the database snapshot (sha256,
size, page size and the sha256 of every page) and the media files (path,
size, sha256). Its id is the sha256 of its canonical JSON. The sending side
keeps the manifests it sent (SENT_DIR, the newest KEEP_SENT) so a later
backup can send only what differs from one the receiver holds; the
receiving side keeps the manifest it restored last with an unmigrated copy
of that database (BASE_DIR). A sender keeps what it sent last as its base
too (keep_sent_base): at a rollback it receives, and the droplet sending
then restored exactly that data at the promote.
"""
import hashlib
import json
import os
import posixpath
import shutil
import struct
import tempfile

from . import common

MANIFEST_NAME = "state.json"  # app.tar member: the target manifest
DELTA_NAME = "delta.json"     # app.tar member: base, target, what was sent
PAGES_NAME = "db.pages"       # app.tar member: changed database pages

SENT_DIR = os.path.join(common.DATA_DIR, ".fleet-sent")
BASE_DIR = os.path.join(common.DATA_DIR, ".fleet-base")
CACHE_PATH = os.path.join(SENT_DIR, "hashcache.json")
KEEP_SENT = 3

# Below this a database goes whole: a page diff saves nothing worth its risk.
MIN_PAGED_DB = int(os.environ.get("BLOG_DELTA_MIN_DB", str(1 << 20)))
MAX_MANIFEST = 256 << 20  # bytes of JSON we agree to read
PAGES_MAGIC = b"FLEETPG1"
ID_CHARS = set("0123456789abcdef")


class DeltaError(Exception):
    pass


class BaseMismatch(DeltaError):
    """The delta does not apply to what this droplet holds: fleet falls
    back to a full archive (blog-restore exit 4)."""


def canonical(manifest):
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def manifest_id(manifest):
    return hashlib.sha256(canonical(manifest)).hexdigest()


def valid_id(s):
    return isinstance(s, str) and len(s) == 64 and set(s) <= ID_CHARS


def manifest_name(p):
    """Whether a media path can go into a manifest (UTF-8, safe)."""
    try:
        p.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return safe_path(p)


def safe_path(p):
    """A media path as the manifest may hold it: relative, normalized, no
    climbing out, no NUL."""
    if not isinstance(p, str) or not p or p.startswith("/") or "\\" in p or "\x00" in p:
        return False
    norm = posixpath.normpath(p)
    return norm == p and norm != "." and norm != ".." and not norm.startswith("../")


def db_pages(path):
    """(page_size, [sha256 of each page]) of a sqlite file."""
    with open(path, "rb") as f:
        head = f.read(100)
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            raise DeltaError(f"{path}: not a sqlite database")
        ps = struct.unpack(">H", head[16:18])[0]
        ps = 65536 if ps == 1 else ps
        f.seek(0)
        pages = []
        for chunk in iter(lambda: f.read(ps), b""):
            pages.append(hashlib.sha256(chunk).hexdigest())
    return ps, pages


def db_entry(path, digest):
    ps, pages = db_pages(path)
    return {"sha256": digest, "size": os.path.getsize(path), "page_size": ps, "pages": pages}


def load_json(path, what):
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise DeltaError(f"{what}: {e}")
    if size > MAX_MANIFEST:
        raise DeltaError(f"{what}: {size} bytes, more than {MAX_MANIFEST}")
    with open(path, "rb") as f:
        try:
            return json.loads(f.read())
        except ValueError as e:
            raise DeltaError(f"{what}: not JSON: {e}")


def check_manifest(m, what):
    """Raises DeltaError unless m has a manifest's shape; returns m."""
    try:
        db = m["db"]
        ok = (m.get("v") == 1 and valid_id(db["sha256"]) and isinstance(db["size"], int)
              and isinstance(db["page_size"], int) and isinstance(db["pages"], list)
              and isinstance(m["media"], list))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise DeltaError(f"{what}: not a content manifest")
    prev = None
    for e in m["media"]:
        if (not isinstance(e, list) or len(e) != 3 or not safe_path(e[0])
                or not isinstance(e[1], int) or e[1] < 0 or not valid_id(e[2])):
            raise DeltaError(f"{what}: bad media entry {str(e)[:200]!r}")
        if prev is not None and e[0] <= prev:
            raise DeltaError(f"{what}: media entries not sorted or repeated at {e[0]!r}")
        prev = e[0]
    return m


class HashCache:
    """sha256 of media files keyed by (path, size, mtime_ns, inode), so a
    file that did not change is not read again."""

    def __init__(self, path=CACHE_PATH):
        self.path = path
        self.old = {}
        self.new = {}
        self.hashed = 0
        try:
            data = load_json(path, "hash cache")
            if isinstance(data, dict):
                self.old = data
        except DeltaError:
            pass

    @staticmethod
    def key(st):
        return [st.st_size, st.st_mtime_ns, st.st_ino]

    def lookup(self, rel, st):
        e = self.old.get(rel)
        if isinstance(e, list) and len(e) == 4 and e[:3] == self.key(st) and valid_id(e[3]):
            self.new[rel] = e
            return e[3]
        return None

    def store(self, rel, st, digest):
        self.new[rel] = self.key(st) + [digest]

    def get(self, rel, full):
        st = os.lstat(full)
        digest = self.lookup(rel, st)
        if digest is None:
            digest = common_sha256(full)
            self.hashed += 1
            if self.key(os.lstat(full)) == self.key(st):  # unchanged while read
                self.store(rel, st, digest)
        return st, digest

    def save(self):
        write_json_atomic(self.path, self.new)


def common_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(canonical(obj))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def walk_media(top):
    """Sorted [(rel, full)] of the regular files under top, and whether
    anything else (a symlink, a fifo, a name no manifest can hold) is
    there: then only a manifest-less full archive carries the media
    faithfully."""
    files, other = [], False
    if not os.path.isdir(top):
        return files, other
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel = os.path.relpath(dirpath, top)
        for name in filenames:
            full = os.path.join(dirpath, name)
            r = name if rel == "." else f"{rel}/{name}"
            if os.path.islink(full) or not os.path.isfile(full) or not manifest_name(r):
                other = True
                continue
            files.append((r, full))
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                other = True
    files.sort()
    return files, other


# --- sending side ---------------------------------------------------------

def sent_path(ident):
    return os.path.join(SENT_DIR, ident + ".json")


def record_sent(manifest, ident):
    write_json_atomic(sent_path(ident), manifest)
    names = [n for n in os.listdir(SENT_DIR) if n.endswith(".json") and valid_id(n[:-5])]
    names.sort(key=lambda n: os.path.getmtime(os.path.join(SENT_DIR, n)), reverse=True)
    for n in names[KEEP_SENT:]:
        try:
            os.unlink(os.path.join(SENT_DIR, n))
        except FileNotFoundError:
            pass


def load_sent(ident):
    """The manifest this droplet sent as ident, or None."""
    if not valid_id(ident):
        return None
    try:
        m = load_json(sent_path(ident), f"sent manifest {ident[:12]}")
        check_manifest(m, "sent manifest")
    except DeltaError:
        return None
    return m if manifest_id(m) == ident else None


def load_known(ident):
    """The manifest ident names if this droplet sent it (SENT_DIR) or holds
    it as its base (BASE_DIR, restored or sent); else None. Only the
    manifest: a sender diffs against it, its live data need not match."""
    m = load_sent(ident)
    if m is not None or not valid_id(ident):
        return m
    try:
        m = check_manifest(load_json(os.path.join(BASE_DIR, MANIFEST_NAME), "base manifest"), "base manifest")
    except DeltaError:
        return None
    return m if manifest_id(m) == ident else None


def keep_sent_base(stage, db, manifest, ident, stats):
    """Makes what this droplet just sent its base: db (the snapshot sent,
    moved, so it must be in DATA_DIR), the manifest and the media's stat
    keys (stats: path -> HashCache key, taken before each file was
    hashed). stage is an empty dir in DATA_DIR to build it in. The base it
    replaces stays known to load_known through SENT_DIR. Returns False
    (nothing changed) when a media file has no stat key."""
    if any(stats.get(p) is None for p, _, _ in manifest["media"]):
        return False
    old = None
    try:
        with open(os.path.join(BASE_DIR, "id"), encoding="ascii") as f:
            old = f.read().strip()
    except OSError:
        pass
    if valid_id(old) and old != ident and not os.path.exists(sent_path(old)):
        try:
            m = check_manifest(load_json(os.path.join(BASE_DIR, MANIFEST_NAME), "base manifest"), "base manifest")
            if manifest_id(m) == old:
                record_sent(m, old)
        except DeltaError:
            pass
    os.rename(db, os.path.join(stage, "db.sqlite3"))
    with open(os.path.join(stage, MANIFEST_NAME), "wb") as f:
        f.write(canonical(manifest))
    with open(os.path.join(stage, "stat.json"), "wb") as f:
        f.write(canonical({p: stats[p] for p, _, _ in manifest["media"]}))
    with open(os.path.join(stage, "id"), "w", encoding="ascii") as f:
        f.write(ident + "\n")
    aside = None
    if os.path.lexists(BASE_DIR):
        aside = BASE_DIR + ".old"
        shutil.rmtree(aside, ignore_errors=True)
        os.rename(BASE_DIR, aside)
    os.rename(stage, BASE_DIR)
    if aside:
        shutil.rmtree(aside, ignore_errors=True)
    return True


def changed_pages(base_db, target_db):
    """Page numbers (1-based) of target that differ from base, or None when
    the whole database should go (no comparable base, small, or mostly
    changed)."""
    if not base_db or base_db.get("page_size") != target_db["page_size"]:
        return None
    if target_db["size"] < MIN_PAGED_DB:
        return None
    bp, tp = base_db["pages"], target_db["pages"]
    changed = [i + 1 for i, h in enumerate(tp) if i >= len(bp) or bp[i] != h]
    if len(changed) * 2 > len(tp):
        return None
    return changed


def write_pages(db, page_size, npages, pages, out):
    """db.pages: magic, page size, target page count, then (number, bytes)
    for each page in pages."""
    out.write(PAGES_MAGIC + struct.pack(">II", page_size, npages))
    with open(db, "rb") as f:
        for n in pages:
            f.seek((n - 1) * page_size)
            data = f.read(page_size)
            if len(data) != page_size:
                raise DeltaError(f"page {n}: short read")
            out.write(struct.pack(">I", n) + data)


# --- receiving side -------------------------------------------------------

def apply_pages(pages_path, db, page_size, max_pages):
    """Writes db.pages' pages into db (a copy of the base) and truncates it
    to the target's page count."""
    with open(pages_path, "rb") as src, open(db, "r+b") as dst:
        head = src.read(16)
        if len(head) != 16 or head[:8] != PAGES_MAGIC:
            raise DeltaError(f"{PAGES_NAME}: bad header")
        ps, npages = struct.unpack(">II", head[8:])
        if ps != page_size or npages > max_pages:
            raise DeltaError(f"{PAGES_NAME}: page size {ps} / {npages} pages does not match the target")
        while True:
            rec = src.read(4)
            if not rec:
                break
            if len(rec) != 4:
                raise DeltaError(f"{PAGES_NAME}: truncated")
            n = struct.unpack(">I", rec)[0]
            data = src.read(ps)
            if n < 1 or n > npages or len(data) != ps:
                raise DeltaError(f"{PAGES_NAME}: bad page record {n}")
            dst.seek((n - 1) * ps)
            dst.write(data)
        dst.truncate(npages * ps)


def base_id():
    """The id of the content this droplet restored last, if its base copy
    is still whole and its media unchanged since; else None."""
    try:
        with open(os.path.join(BASE_DIR, "id"), encoding="ascii") as f:
            ident = f.read().strip()
        m = load_json(os.path.join(BASE_DIR, MANIFEST_NAME), "base manifest")
        stats = load_json(os.path.join(BASE_DIR, "stat.json"), "base stat")
        check_manifest(m, "base manifest")
        if not valid_id(ident) or manifest_id(m) != ident:
            return None
        if os.path.getsize(os.path.join(BASE_DIR, "db.sqlite3")) != m["db"]["size"]:
            return None
        for path, size, _ in m["media"]:
            if not media_unchanged(path, size, stats):
                return None
    except (OSError, DeltaError, ValueError, TypeError):
        return None
    return ident


def media_unchanged(path, size, stats):
    """Whether the live media file is the one recorded when the base was
    restored (same size, mtime and inode)."""
    rec = stats.get(path)
    try:
        st = os.lstat(os.path.join(common.MEDIA_DIR, path))
    except OSError:
        return False
    return (isinstance(rec, list) and rec == HashCache.key(st) and st.st_size == size
            and os.path.isfile(os.path.join(common.MEDIA_DIR, path)))


def media_stats(manifest):
    out = {}
    for path, _, _ in manifest["media"]:
        out[path] = HashCache.key(os.lstat(os.path.join(common.MEDIA_DIR, path)))
    return out
