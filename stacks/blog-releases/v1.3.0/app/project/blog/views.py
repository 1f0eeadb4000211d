import ipaddress
import json

from django.conf import settings
from django.contrib import messages
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import Http404, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from blogops import common
from blogsite.release import RELEASE

from .forms import CommentForm
from .models import Comment, Post


def published():
    return Post.objects.filter(published=True)


def post_list(request):
    return render(request, "blog/post_list.html", {"posts": published()})


def render_post(request, post, form=None, status=200):
    return render(request, "blog/post_detail.html", {
        "post": post,
        "comments": post.comments.filter(status=Comment.APPROVED),
        "form": form or CommentForm(),
    }, status=status)


def post_detail(request, slug):
    return render_post(request, get_object_or_404(published(), slug=slug))


def wants_json(request):
    return "application/json" in request.headers.get("Accept", "")


def client_ip(request):
    """nginx's X-Real-IP when present (and an address), else the peer."""
    for candidate in (request.headers.get("X-Real-IP", ""), request.META.get("REMOTE_ADDR", "")):
        try:
            return str(ipaddress.ip_address(candidate.strip()))
        except ValueError:
            continue
    return ""


def comment_data(request):
    """The form fields: urlencoded/multipart, or a JSON object body."""
    if request.content_type == "application/json":
        try:
            obj = json.loads(request.body or b"{}")
        except ValueError:
            obj = None
        data = QueryDict(mutable=True)
        if isinstance(obj, dict):
            for key in ("author", "email", "body"):
                if isinstance(obj.get(key), str):
                    data[key] = obj[key]
        return data
    return request.POST


@require_POST
def comment_create(request, slug):
    post = get_object_or_404(published(), slug=slug)
    form = CommentForm(comment_data(request))
    if not form.is_valid():
        if wants_json(request):
            errors = {f: [e["message"] for e in errs] for f, errs in form.errors.get_json_data().items()}
            return JsonResponse({"errors": errors}, status=400)
        return render_post(request, post, form, status=400)
    comment = form.save(commit=False)
    comment.post = post
    comment.user_ip = client_ip(request)
    comment.user_agent = request.headers.get("User-Agent", "")[:500]
    comment.save()
    if wants_json(request):
        return JsonResponse({"id": comment.id, "status": comment.status}, status=201)
    messages.info(request, "Thank you: your comment awaits moderation.")
    resp = HttpResponseRedirect(post.get_absolute_url())
    resp.status_code = 303
    return resp


def comments_json(request, slug):
    post = get_object_or_404(published(), slug=slug)
    comments = post.comments.filter(status=Comment.APPROVED)
    return JsonResponse({"comments": [
        {"id": c.id, "author": c.author, "body": c.body, "created": c.created.isoformat()}
        for c in comments]})


def tag_posts(request, tag):
    want = tag.strip().lower()
    posts = [p for p in published().filter(tags__icontains=want)
             if want in (t.lower() for t in p.tag_list)]
    if not posts:
        raise Http404("no posts with this tag")
    name = next(t for t in posts[0].tag_list if t.lower() == want)
    return render(request, "blog/tag.html", {"tag": name, "posts": posts})


def post_json(post):
    return {
        "slug": post.slug,
        "title": post.title,
        "tags": post.tag_list,
        "created": post.created.isoformat(),
        "image": post.image.url if post.image else None,
        "attachments": [{"name": a.name, "url": a.file.url} for a in post.attachments.all()],
    }


def api_posts(request):
    posts = published().prefetch_related("attachments")
    return JsonResponse({"posts": [post_json(p) for p in posts]})


def health_extra():
    """Fields later releases add to /healthz."""
    return {"pending_comments": Comment.objects.filter(status=Comment.PENDING).count()}


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
