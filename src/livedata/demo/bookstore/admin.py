from django.contrib import admin

from livedata.demo.bookstore.models import Author, Book


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name", "email"]
    search_fields = ["name", "email"]


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "author"]
    list_select_related = ["author"]
    search_fields = ["title", "author__name"]
