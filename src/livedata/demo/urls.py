from django.contrib import admin
from django.urls import include, path

from livedata.demo.bookstore import receiver, views

urlpatterns = [
    path("", views.index, name="index"),
    path("admin/", admin.site.urls),
    path("livedata/", include("livedata.urls")),
    path("example-receiver/", receiver.example_receiver, name="example-receiver"),
]
