"""The bench server's extra route: the same books through Django REST framework's
CursorPagination (the baseline of bench/pull.py), authenticated with the same tokens.

The URL conf of ``bench.pull_bench_settings`` (the demo's settings with this route).
"""

from __future__ import annotations

from django.urls import path
from rest_framework import generics, serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated

from livedata.demo.urls import urlpatterns as demo_urls


class TokenAuthentication(BaseAuthentication):
    """livedata's bearer tokens, so both sides pay the same authentication."""

    def authenticate(self, request):  # type: ignore[no-untyped-def]
        from livedata.accounts import tokens

        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Bearer "):
            return None
        token = tokens.lookup(header[7:])
        if token is None:
            raise AuthenticationFailed("invalid token")
        tokens.touch(token)
        return token.user, None


class BookSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    author_id = serializers.IntegerField()


class ById(CursorPagination):
    page_size = 1000
    max_page_size = 10000
    page_size_query_param = "page_size"
    ordering = "id"


class Books(generics.ListAPIView):
    serializer_class = BookSerializer
    pagination_class = ById
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        from livedata.demo.bookstore.models import Book

        return Book.objects.order_by("id")


urlpatterns = [path("drf/books/", Books.as_view()), *demo_urls]
