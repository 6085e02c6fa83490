"""livedata's HTTP APIs for services: webhook subscriptions and the pull feed.

Include them in a project's URLconf (the demo mounts them at ``/livedata/``)::

    path("livedata/", include("livedata.urls")),
"""

from django.urls import path

from livedata.pull import views as pull
from livedata.webhooks import views as webhooks

app_name = "livedata"

urlpatterns = [
    path("pull/<str:label>", pull.feed, name="pull"),
    path("subscriptions/", webhooks.subscription_list, name="subscriptions"),
    path("subscriptions/<str:name>", webhooks.subscription_detail, name="subscription"),
    path(
        "subscriptions/<str:name>/position",
        webhooks.subscription_position,
        name="subscription-position",
    ),
]
