"""Sarafan: wiring only. Routes live in blueprints under chalicelib/api/.

Chalice imports this module for ``package``, ``deploy`` and ``local``: it must
not read required settings or create AWS clients at import time.

The cyclic garbage collector is paused while the imports below run, and what they built is then
frozen (``gc.freeze``: never scanned again) before it resumes: a cold start's imports build what the
container keeps, and collecting while they run (and re-scanning their ~70,000 objects in every later
full collection) was the largest single cost of a cold start left (the cold-start figures in docs/, "Garbage
collection"; the ~340 KB of cyclic garbage the imports leave stays frozen). The first HTTP request
does the same (``chalicelib.api.http.http_middleware``).
"""
# The imports come after pausing the collector:
# ruff: noqa: E402

import gc

_collecting = gc.isenabled()
gc.disable()

from chalice import Chalice

from chalicelib.api.admin import admin
from chalicelib.api.analytics import analytics_api
from chalicelib.api.crm_consumer import crm_consumer
from chalicelib.api.data_rights import data_rights
from chalicelib.api.http import http_middleware
from chalicelib.api.integrations import integrations
from chalicelib.api.jobs import jobs
from chalicelib.api.landing import landing
from chalicelib.api.members import members
from chalicelib.api.meta import meta
from chalicelib.api.notifications import notifications
from chalicelib.api.offers import offers_api
from chalicelib.api.partner_webhooks import partner_webhooks_api
from chalicelib.api.review import review
from chalicelib.api.rewards import rewards
from chalicelib.api.streams import streams
from chalicelib.api.webhooks import webhooks
from chalicelib.services import ports
from chalicelib.web.pages import web
from chalicelib.web.wallet import wallet_pages

# The service ports (stores, rate limiter, secrets, clock), built once on first use: no AWS client now.
ports.wire(ports.production)
app = Chalice(app_name="sarafan")
app.register_middleware(http_middleware, "http")
app.register_blueprint(meta)
app.register_blueprint(admin)
app.register_blueprint(webhooks)
app.register_blueprint(rewards)
app.register_blueprint(jobs)
app.register_blueprint(landing)
app.register_blueprint(members)
app.register_blueprint(notifications)
app.register_blueprint(streams)
app.register_blueprint(integrations)
app.register_blueprint(crm_consumer)
app.register_blueprint(data_rights)
app.register_blueprint(offers_api)
app.register_blueprint(partner_webhooks_api)
app.register_blueprint(review)
app.register_blueprint(analytics_api)
app.register_blueprint(web)
app.register_blueprint(wallet_pages)

gc.freeze()
if _collecting:
    gc.enable()
