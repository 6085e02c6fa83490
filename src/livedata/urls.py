"""livedata's HTTP APIs for services; include them in a project's URLconf::

path("livedata/", include("livedata.urls")),
"""

from django.urls import path

from livedata.webhooks import views as webhooks

app_name = "livedata"

urlpatterns = [
    path("subscriptions/", webhooks.subscription_list, name="subscriptions"),
    path("subscriptions/<str:name>", webhooks.subscription_detail, name="subscription"),
    path(
        "subscriptions/<str:name>/position",
        webhooks.subscription_position,
        name="subscription-position",
    ),
]
