"""Freeze support (fleet's contract): every unsafe request holds the SHARED
write lock while it runs; blog-drain takes it EXCLUSIVE, so it returns once
the in-flight writes have committed. With /run/fleet-flags/readonly present
writes get 503 + Retry-After."""
import json

from django.db import transaction
from django.http import HttpResponse

from blogops import common

from .models import WriteJournal


UNSAFE = frozenset(["POST", "PUT", "PATCH", "DELETE"])


def frozen_response(request):
    if "application/json" in request.headers.get("Accept", ""):
        body = json.dumps({"error": "read-only", "detail": "the site is read-only for maintenance; retry shortly"})
        resp = HttpResponse(body + "\n", status=503, content_type="application/json")
    else:
        resp = HttpResponse("The site is read-only for maintenance; please retry shortly.\n",
                            status=503, content_type="text/plain; charset=utf-8")
    resp["Retry-After"] = "5"
    resp["Cache-Control"] = "no-store"
    return resp


class FreezeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in UNSAFE:
            return self.get_response(request)
        with common.write_lock():
            if common.is_frozen():
                return frozen_response(request)
            # One transaction for the request and its journal row: a write
            # is never committed without being counted. A 5xx rolls back.
            with transaction.atomic():
                response = self.get_response(request)
                if response.status_code < 400:
                    WriteJournal.objects.create(
                        method=request.method, path=request.path[:500])
                elif response.status_code >= 500:
                    transaction.set_rollback(True)
            return response
