"""ASGI entry point: the dashboard, with relayd's export as a long poll (policy/long_poll.py).

Serve it with uvicorn (docs/deploy/relayadmin-longpoll.service): `uvicorn relayadmin.asgi:application`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "relayadmin.settings")

django_application = get_asgi_application()

from policy.long_poll import LongPollMiddleware  # noqa: E402 (needs the apps loaded above)

application = LongPollMiddleware(django_application)
