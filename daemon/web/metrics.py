"""``/metrics``: Prometheus metrics of the daemon (prometheus_client, own registry).

Two kinds:

- **counters and histograms** move as runs finish in this process
  (:meth:`Metrics.run_finished`): documents imported, exported, failed and
  rejected, runs by result, run durations. Like every Prometheus counter
  they start at 0 with the process; ``rate()``/``increase()`` handle that.
- **gauges** are read from the catalog and ledger at scrape time
  (:class:`_StateCollector`): documents per account and state (pending
  included), the last successful run, staleness, whether the scheduler runs.

Labels are only configured source and account ids and fixed state names, so
the label sets stay bounded; an id removed by a reload is dropped.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from invoicesync.daemon import __version__
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .host import WebHost

__all__ = ["DURATION_BUCKETS", "Metrics"]

# ``*_created`` series double the output and no alert uses them.
disable_created_metrics()

#: Seconds: a quiet folder takes milliseconds, a first sync of a portal an hour.
DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, float("inf"))


class Metrics:
    """The registry behind ``/metrics``."""

    def __init__(self, host: WebHost) -> None:
        self.host = host
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.imported = Counter(
            "invoicesync_documents_imported",
            "Documents imported (new or with new content), per source.",
            ["source"],
            registry=r,
        )
        self.import_failed = Counter(
            "invoicesync_documents_import_failed",
            "Documents a source could not import (e.g. a malformed sidecar).",
            ["source"],
            registry=r,
        )
        self.exported = Counter(
            "invoicesync_documents_exported",
            "Documents exported, per account.",
            ["account"],
            registry=r,
        )
        self.export_failed = Counter(
            "invoicesync_documents_export_failed",
            "Exports that failed after their retries (tried again at a later run).",
            ["account"],
            registry=r,
        )
        self.rejected = Counter(
            "invoicesync_documents_rejected",
            "Documents the target refused for good, per account.",
            ["account"],
            registry=r,
        )
        self.import_runs = Counter(
            "invoicesync_import_runs",
            "Import runs by result (ok, partial, failed).",
            ["source", "result"],
            registry=r,
        )
        self.export_runs = Counter(
            "invoicesync_export_runs",
            "Export runs by result (ok, partial, failed).",
            ["account", "result"],
            registry=r,
        )
        self.import_duration = Histogram(
            "invoicesync_import_run_duration_seconds",
            "How long import runs take.",
            ["source"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.export_duration = Histogram(
            "invoicesync_export_run_duration_seconds",
            "How long export runs take.",
            ["account"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        info = Info("invoicesync", "The running invoicesync.", registry=r)
        info.info({"version": __version__, "mode": host.mode})
        r.register(_StateCollector(host))
        self._lock = threading.Lock()
        self._labels: tuple[set[str], set[str]] = (set(), set())
        self.configure()

    def configure(self) -> None:
        """Create every configured id's series at 0; drop ids that are gone."""
        cfg = self.host.runtime.config
        sources = {s.id for s in cfg.sources}
        accounts = {a.id for a in cfg.exports}
        with self._lock:
            old_sources, old_accounts = self._labels
            for source in old_sources - sources:
                for metric in (self.imported, self.import_failed, self.import_duration):
                    _remove(metric, source)
                for result in ("ok", "partial", "failed"):
                    _remove(self.import_runs, source, result)
            for account in old_accounts - accounts:
                for metric in (
                    self.exported,
                    self.export_failed,
                    self.rejected,
                    self.export_duration,
                ):
                    _remove(metric, account)
                for result in ("ok", "partial", "failed"):
                    _remove(self.export_runs, account, result)
            for source in sources:
                self.imported.labels(source)
                self.import_failed.labels(source)
                self.import_duration.labels(source)
                for result in ("ok", "partial", "failed"):
                    self.import_runs.labels(source, result)
            for account in accounts:
                self.exported.labels(account)
                self.export_failed.labels(account)
                self.rejected.labels(account)
                self.export_duration.labels(account)
                for result in ("ok", "partial", "failed"):
                    self.export_runs.labels(account, result)
            self._labels = (sources, accounts)

    def run_finished(self, kind: str, subject: str, summary: Any) -> None:
        """Count one finished run (an ImportSummary or ExportSummary)."""
        counts = summary.counts
        result = "ok" if summary.ok else ("failed" if summary.error else "partial")
        with self._lock:
            if kind == "import":
                if subject not in self._labels[0]:
                    return
                self.imported.labels(subject).inc(counts["new"] + counts["new_revision"])
                self.import_failed.labels(subject).inc(counts["failed"])
                self.import_runs.labels(subject, result).inc()
                self.import_duration.labels(subject).observe(summary.duration_s)
            else:
                if subject not in self._labels[1]:
                    return
                self.exported.labels(subject).inc(counts["exported"])
                self.export_failed.labels(subject).inc(counts["failed"])
                self.rejected.labels(subject).inc(counts["rejected"])
                self.export_runs.labels(subject, result).inc()
                self.export_duration.labels(subject).observe(summary.duration_s)


def _remove(metric: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class _StateCollector(Collector):
    """Gauges read from the state at scrape time."""

    def __init__(self, host: WebHost) -> None:
        self.host = host

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked: the names are fixed, the samples come from the database

    def collect(self) -> Iterator[Metric]:
        host = self.host
        cfg = host.runtime.config
        running = GaugeMetricFamily(
            "invoicesync_scheduler_running", "1 while the daemon's scheduler runs."
        )
        running.add_metric([], 1.0 if host.scheduler_running() else 0.0)
        yield running
        if host.started_at is not None:
            start = GaugeMetricFamily(
                "invoicesync_start_time_seconds", "When the daemon started (Unix time)."
            )
            start.add_metric([], host.started_at.timestamp())
            yield start
        docs = GaugeMetricFamily(
            "invoicesync_account_documents",
            "Documents per account by state (pending and excluded as the restrictions say now).",
            labels=["account", "state"],
        )
        for account in cfg.exports:
            counts = host.account_counts(account)
            for state in ("exported", "pending", "failed", "rejected", "excluded", "exporting"):
                value = getattr(counts, state)
                if value is not None:  # pending/excluded: absent until first counted
                    docs.add_metric([account.id, state], float(value))
        yield docs
        catalog = GaugeMetricFamily(
            "invoicesync_source_documents",
            "Documents in the catalog per source.",
            labels=["source"],
        )
        per_source = host.source_documents()
        for source in cfg.sources:
            catalog.add_metric([source.id], float(per_source.get(source.id, 0)))
        yield catalog
        for kind, entries in (("source", cfg.sources), ("account", cfg.exports)):
            last = GaugeMetricFamily(
                f"invoicesync_{kind}_last_success_timestamp_seconds",
                f"When the {kind}'s last successful run finished (Unix time); "
                "absent before the first.",
                labels=[kind],
            )
            stale = GaugeMetricFamily(
                f"invoicesync_{kind}_stale",
                f"1 when the {kind} had no successful run for longer than its stale_after.",
                labels=[kind],
            )
            limit = GaugeMetricFamily(
                f"invoicesync_{kind}_stale_after_seconds",
                f"The {kind}'s stale_after (absent: never stale).",
                labels=[kind],
            )
            for entry in entries:
                staled = host.staleness(kind, entry)
                if staled.last_success is not None:
                    last.add_metric([entry.id], staled.last_success.timestamp())
                stale.add_metric([entry.id], 1.0 if staled.stale else 0.0)
                if staled.stale_after is not None:
                    limit.add_metric([entry.id], staled.stale_after.total_seconds())
            yield last
            yield stale
            yield limit
