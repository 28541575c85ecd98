"""Sarafan: wiring only. Routes live in blueprints under chalicelib/api/.

Chalice imports this module for ``package``, ``deploy`` and ``local``: it must
not read required settings or create AWS clients at import time.
"""

from chalice import Chalice

from chalicelib.api.admin import admin
from chalicelib.api.http import http_middleware
from chalicelib.api.meta import meta
from chalicelib.api.webhooks import webhooks

app = Chalice(app_name="sarafan")
app.register_middleware(http_middleware, "http")
app.register_blueprint(meta)
app.register_blueprint(admin)
app.register_blueprint(webhooks)
