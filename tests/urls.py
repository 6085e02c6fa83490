from django.urls import path

from livedata.demo.urls import urlpatterns as demo_urls
from tests.testapp import views

urlpatterns = [
    path("t/write-sync/", views.write_sync),
    path("t/write-async/", views.write_async),
    path("t/api/", views.api_echo),
    path("t/api-async/", views.api_echo_async),
    path("t/pull-waiters/", views.pull_waiters),
    *demo_urls,
]
