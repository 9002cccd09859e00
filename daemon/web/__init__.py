"""The daemon's HTTP endpoint: a read-only status page, ``/metrics`` and ``/healthz``.

Needs the ``web`` extra (Starlette, Jinja2, uvicorn, prometheus_client);
nothing here is imported unless ``daemon: http:`` is configured or
``invoicesync serve`` runs, so the other commands never pay for it.

- :mod:`.host` -- what the pages read: the runtime, the scheduler's state,
  recent run events, cached counts;
- :mod:`.queries` -- the account page's filtered, keyset-paged document list;
- :mod:`.metrics` -- the Prometheus registry;
- :mod:`.app` -- the Starlette application (routes, templates, access control);
- :mod:`.server` -- uvicorn on a thread of the daemon's process.
"""
