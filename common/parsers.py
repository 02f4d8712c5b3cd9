"""JSON parsing with orjson: strict UTF-8, no NaN/Infinity, bounded nesting depth."""

from __future__ import annotations

import orjson
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


def parse_json(raw: bytes):
    """The JSON value of a request body (ParseError saying what is wrong): the one reading of
    bodies, for the views and the PostgreSQL fast path alike."""
    if not raw.strip():
        raise ParseError("A JSON request body is required.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"JSON parse error - {exc}") from None


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return parse_json(stream.read() if stream is not None else b"")
