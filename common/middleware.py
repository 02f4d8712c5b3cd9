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


class ContentSecurityPolicyMiddleware:
    """A Content-Security-Policy on every HTML page (the admin's, and the console's): scripts,
    styles and images of the service itself only, no framing, forms posted to itself. The
    admin writes some style attributes, hence 'unsafe-inline' for styles (never scripts)."""

    POLICY = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.get("Content-Type", "").startswith("text/html"):
            response.setdefault("Content-Security-Policy", self.POLICY)
        return response
