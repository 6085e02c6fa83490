"""livedata's HTTP APIs for services: webhook subscriptions, the pull feed, and the
process's metrics (Prometheus).

Include them in a project's URLconf (the demo mounts them at ``/livedata/``)::

    path("livedata/", include("livedata.urls")),
"""

from django.urls import path

from livedata.metrics import views as metrics
from livedata.pull import views as pull
from livedata.webhooks import views as webhooks

app_name = "livedata"

urlpatterns = [
    path("metrics", metrics.metrics, name="metrics"),
    path("pull/<str:label>", pull.feed, name="pull"),
    path("subscriptions/", webhooks.subscription_list, name="subscriptions"),
    path("subscriptions/<str:name>", webhooks.subscription_detail, name="subscription"),
    path(
        "subscriptions/<str:name>/position",
        webhooks.subscription_position,
        name="subscription-position",
    ),
]
