from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse


class RequestBodyLimitMiddleware:
    """Answers 413 before reading a body larger than MAX_REQUEST_BODY_BYTES."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.limit = settings.MAX_REQUEST_BODY_BYTES

    def __call__(self, request):
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw)
        except ValueError:
            return JsonResponse(
                {"detail": "Content-Length is not a number.", "code": "bad_request"}, status=400
            )
        if length > self.limit:
            return JsonResponse(
                {
                    "detail": f"Request body is larger than {self.limit} bytes.",
                    "code": "request_too_large",
                },
                status=413,
            )
        return self.get_response(request)


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer that does not say otherwise: the service's
    answers are records, tokens and settings behind a login, which no shared or browser cache
    may keep (static files say how long they may be kept)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Cache-Control" not in response:
            response["Cache-Control"] = "no-store"
        return response
