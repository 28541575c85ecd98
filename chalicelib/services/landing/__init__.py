"""Landing pages: invite links, the short-link redirect and public offer info (reachable from the open web).

Modules: ``cors`` (per-program origins, preflights), ``rate_limits`` (per client IP per minute),
``invites`` (find or create the visitor's member, pending invites), ``redirect`` (``/r/{code}``)
and ``offer`` (what a landing page shows for a code).

Everything here is reachable from the open web (a browser-safe publishable key, or no key at all
for ``/r/{code}``). Short links are ``{SARAFAN_PUBLIC_BASE_URL}/r/{code}``: one short domain for
every program, so a code is unique across the deployment (the ``LINK#{code}`` pointer is created
with the member's code pointer in one transaction) and the redirect finds the program from the
code alone, keeping links short.
"""
