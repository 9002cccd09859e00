"""``invoicesync run``: the scheduler daemon (SPEC section 7).

- :mod:`.service` -- the :class:`~.service.Daemon`: scheduler, jobs, reload, shutdown.
- :mod:`.jobs` -- the job bodies: import and export runs, ``after_import`` chaining.
- :mod:`.triggers` -- turning a ``schedule:`` into an APScheduler trigger, windows.
- :mod:`.systemd` -- the ``sd_notify`` protocol (READY, STATUS, WATCHDOG, ...).
- :mod:`.signals` -- SIGTERM/SIGINT/SIGHUP delivered to the main loop.
- :mod:`.nextruns` -- each job's next fire time, shared with ``invoicesync status``.
"""
