"""`?page=N&limit=M` lists answered as ``{count, next, previous, results}``.

`page` starts at 1; `limit` defaults to PAGE_SIZE_DEFAULT and is clamped to PAGE_SIZE_MAX. A
non-integer or a value below 1 answers 400 naming the parameter; a page past the last answers
404, as the original API does.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from .params import int_param

PAGE_PARAM = "page"
LIMIT_PARAM = "limit"


@dataclass(frozen=True)
class PageRequest:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def past_the_end(self, count: int) -> bool:
        """A page after the last (the first page always exists, empty or not)."""
        return self.page > 1 and self.offset >= count

    @classmethod
    def from_query(cls, query_params) -> PageRequest:
        page = int_param(query_params, PAGE_PARAM, minimum=1) or 1
        limit = int_param(query_params, LIMIT_PARAM, minimum=1) or settings.PAGE_SIZE_DEFAULT
        return cls(page=page, limit=min(limit, settings.PAGE_SIZE_MAX))


def page_links(request, page_request: PageRequest, count: int) -> tuple[str | None, str | None]:
    url = request.build_absolute_uri()
    next_url = None
    if page_request.offset + page_request.limit < count:
        next_url = replace_query_param(url, PAGE_PARAM, page_request.page + 1)
    previous_url = None
    if page_request.page > 1:
        if page_request.page == 2:
            previous_url = remove_query_param(url, PAGE_PARAM)
        else:
            previous_url = replace_query_param(url, PAGE_PARAM, page_request.page - 1)
    return next_url, previous_url


def cursor_link(request, token: str) -> str:
    """The URL of the next page in cursor mode (`page` has no meaning there)."""
    url = remove_query_param(request.build_absolute_uri(), PAGE_PARAM)
    return replace_query_param(url, "cursor", token)


def check_page_exists(page_request: PageRequest, count: int) -> None:
    if page_request.past_the_end(count):
        raise NotFound("Invalid page.")


def paginated_response(request, queryset, represent, count: int | None = None) -> Response:
    """One page of an ordered queryset, each row turned into JSON by `represent`. `count` is
    the queryset's, when the caller knows it without counting."""
    page_request = PageRequest.from_query(request.query_params)
    if count is None:
        count = queryset.count()
    check_page_exists(page_request, count)
    rows = queryset[page_request.offset : page_request.offset + page_request.limit]
    next_url, previous_url = page_links(request, page_request, count)
    return Response(
        {
            "count": count,
            "next": next_url,
            "previous": previous_url,
            "results": [represent(row) for row in rows],
        }
    )
