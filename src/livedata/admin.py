from livedata.accounts import admin as accounts_admin  # noqa: F401  (login tokens)
from livedata.capture import admin  # noqa: F401  (registers the change-log admin)
from livedata.dashboard import admin as dashboard_admin  # noqa: F401  (the operators' page)
from livedata.webhooks import admin as webhooks_admin  # noqa: F401  (subscriptions, deliveries)
