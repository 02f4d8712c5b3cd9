from __future__ import annotations

from rest_framework.negotiation import BaseContentNegotiation


class JSONOnlyNegotiation(BaseContentNegotiation):
    """Every answer is JSON, whatever the Accept header says (as the original API does)."""

    def select_parser(self, request, parsers):
        for parser in parsers:
            if _media_type_matches(request.content_type, parser.media_type):
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _media_type_matches(content_type: str, expected: str) -> bool:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return base == expected or (base.startswith("application/") and base.endswith("+json"))
