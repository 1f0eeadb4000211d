from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from blogops import common
from blogsite.release import RELEASE

from .models import Post


def published():
    return Post.objects.filter(published=True)


def post_list(request):
    return render(request, "blog/post_list.html", {"posts": published()})


def post_detail(request, slug):
    post = get_object_or_404(published(), slug=slug)
    return render(request, "blog/post_detail.html", {"post": post})


def post_json(post):
    return {
        "slug": post.slug,
        "title": post.title,
        "tags": post.tag_list,
        "created": post.created.isoformat(),
    }


def api_posts(request):
    return JsonResponse({"posts": [post_json(p) for p in published()]})


def health_extra():
    """Fields later releases add to /healthz."""
    return {}


def healthz(request):
    body = {"ok": False, "db": "unknown", "pending_migrations": None,
            "version": settings.FLEET_VERSION, "release": RELEASE,
            "readonly": common.is_frozen()}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        body["db"] = "ok"
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        body["pending_migrations"] = len(plan)
        if plan:
            body["reason"] = "unapplied migrations: " + ", ".join(
                f"{m.app_label}.{m.name}" for m, _ in plan)
        else:
            body.update(health_extra())
            body["ok"] = True
    except Exception as e:  # noqa: BLE001 - any failure makes us unhealthy
        if body["db"] == "unknown":
            body["db"] = "error"
        body["reason"] = f"{type(e).__name__}: {e}"
    resp = JsonResponse(body, status=200 if body["ok"] else 503)
    resp["Cache-Control"] = "no-store"
    return resp
