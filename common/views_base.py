from __future__ import annotations

from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.views import APIView

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class JSONAPIView(APIView):
    """An API view whose writes take a JSON body: none at all answers 400 (unless the view's
    body is optional), a body that is not declared as JSON answers 415 (DRF would otherwise
    read either as an empty object)."""

    body_required = True

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # Unsupported methods are left to answer 405.
        if request.method in BODY_METHODS and hasattr(self, request.method.lower()):
            if request.stream is None:
                if self.body_required:
                    raise ParseError("A JSON request body is required.")
            elif not request.content_type:
                raise UnsupportedMediaType("", detail="Content-Type must be application/json.")
