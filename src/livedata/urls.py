"""livedata's HTTP endpoints for services.

Mount them with ``path("livedata/", include("livedata.urls"))`` (the demo does).
"""

from django.urls import path

from livedata.pull import views as pull

urlpatterns = [
    path("pull/<str:label>", pull.feed, name="livedata-pull"),
]
