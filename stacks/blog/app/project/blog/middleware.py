"""Freeze support (fleet's contract): every unsafe request holds the SHARED
write lock while it runs; blog-drain takes it EXCLUSIVE, so it returns once
the in-flight writes have committed. With /run/fleet-flags/readonly present
writes get 503 + Retry-After; with /run/fleet-flags/hold too, 418, which
nginx passes (method and body kept) to fleet-gate, where the write waits
for the new release instead of being refused."""
import json
import os

from django.db import transaction
from django.http import HttpResponse

from blogops import common

from .models import WriteJournal


UNSAFE = frozenset(["POST", "PUT", "PATCH", "DELETE"])
# With readonly: writes wait at fleet-gate instead of being refused.
HOLD_FLAG = os.path.join(common.FLAGS_DIR, "hold")


def held_response():
    # Never reaches a client: nginx intercepts 418 (error_page 418 =
    # @fleet_gate) and sends the request to the gate.
    resp = HttpResponse("held\n", status=418, content_type="text/plain")
    resp["Cache-Control"] = "no-store"
    return resp


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
                if os.path.exists(HOLD_FLAG):
                    return held_response()
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
