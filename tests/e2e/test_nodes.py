"""N nodes on one PostgreSQL database (``executor: procrastinate``), through the CLI.

Each node is its own ``invoicesync`` process with its own configuration file
and state folder (nothing on disk is shared but the blobs and the targets):
what keeps them apart is the database alone -- the job queue, the scheduling
role and the run locks. Every test gets a schema of its own.

Waits poll the database or the logs with a bounded deadline; the kill test
pauses the first node inside a hook (``INVOICESYNC_TEST_PAUSE_*``) before the
others start, then kills it with SIGKILL.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fixtures.daemon_proc import DaemonProcess, run_cli, write_config
from fixtures.s3_server import S3Server
from invoicesync.daemon.config.loader import load_config
from invoicesync.daemon.engine.clock import Clock
from invoicesync.daemon.engine.locks import EXIT_BUSY
from invoicesync.daemon.engine.runtime import open_runtime
from invoicesync.daemon.plugin_host import load_plugins
from invoicesync.daemon.storage.database import create_engine

pytestmark = pytest.mark.server

#: Documents in the three-node test (the issue asks for 5,000; CI runs fewer
#: to stay within its time budget: INVOICESYNC_NODES_DOCS=5000 runs the full size).
DOCS = int(os.environ.get("INVOICESYNC_NODES_DOCS", "600"))

ACCOUNTS: dict[str, dict[str, Any]] = {
    "everything": {},
    "invoices": {"attributes": {"types": ["incoming_invoice", "sales_invoice"]}},
    "euro": {"attributes": {"currencies": ["EUR"]}},
    "recent": {"period": {"last": "1y"}},
}


class Cluster:
    """Configuration files for nodes sharing a database, blobs and targets."""

    def __init__(
        self,
        tmp: Path,
        pg_url: str,
        env: dict[str, str],
        *,
        count: int,
        accounts: dict[str, dict[str, Any]] = ACCOUNTS,
        source_schedule: dict[str, Any] | None = None,
        account_schedule: dict[str, Any] | None = None,
        blobs: str | None = None,
        workers: int = 2,
    ) -> None:
        self.tmp = tmp
        self.pg_url = pg_url
        self.env = env
        self.accounts = accounts
        self.targets = tmp / "targets"
        self.procs: list[DaemonProcess] = []
        self._engine: sa.Engine | None = None
        self.data: dict[str, Any] = {
            "version": 1,
            "timezone": "UTC",
            "state": "./state",
            "database": pg_url,
            "blobs": blobs or str(tmp / "shared-blobs"),
            "executor": "procrastinate",
            "log": {"format": "json", "level": "info"},
            "daemon": {
                "grace_period": "10s",
                "workers": workers,
                "jitter": "0s",
                "heartbeat": "1s",
                "stalled_after": "3s",
            },
            "sources": [
                {
                    "id": "demo",
                    "type": "demo",
                    "schedule": source_schedule or {"every": "1h"},
                    "options": {"count": count, "seed": 11},
                }
            ],
            "exports": [
                {
                    "id": name,
                    "type": "folder",
                    "schedule": account_schedule or {"after_import": True},
                    "options": {"path": str(self.targets / name), "fsync": False},
                    **({"restrictions": r} if r else {}),
                }
                for name, r in accounts.items()
            ],
        }

    def config(self, node: str) -> Path:
        folder = self.tmp / node
        folder.mkdir(exist_ok=True)
        return write_config(folder / "invoicesync.yaml", self.data)

    def start(self, node: str, *args: str, **extra_env: str) -> DaemonProcess:
        proc = DaemonProcess(self.config(node), {**self.env, **extra_env}, args or ["run"])
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            proc.kill()
        if self._engine is not None:
            self._engine.dispose()

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_engine(self.pg_url)
        return self._engine

    def expected(self) -> dict[str, set[str]]:
        """Per account, the documents its restrictions admit (evaluated in-process)."""
        loaded = load_config(self.config("checker"), load_plugins())
        rt = open_runtime(loaded, load_plugins(), Clock(None), read_only=True)
        try:
            now = rt.clock.now()
            docs = list(rt.catalog.iter_documents())
            return {
                name: {d.id for d in docs if rt.evaluators[name].evaluate(d, now).export}
                for name in self.accounts
            }
        finally:
            rt.close()

    def exported(self) -> dict[str, set[str]]:
        with self.engine().connect() as conn:
            rows = conn.execute(
                sa.text("SELECT account, document_id FROM ledger WHERE state = 'exported'")
            ).all()
        out: dict[str, set[str]] = {name: set() for name in self.accounts}
        for account, document in rows:
            out[account].add(document)
        return out

    def wait_until(self, what: str, check: Callable[[], bool], timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for proc in self.procs:
                if proc.proc.poll() is not None and proc.proc.returncode not in (0, -9):
                    raise AssertionError(
                        f"a node exited with {proc.proc.returncode}:\n"
                        + "\n".join(proc.lines[-20:])
                    )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def imported(self) -> int:
        with self.engine().connect() as conn:
            if conn.execute(sa.text("SELECT to_regclass('documents')")).scalar() is None:
                return 0  # the first node has not migrated yet
            return int(conn.execute(sa.text("SELECT count(*) FROM documents")).scalar_one())

    def all_exported(self, count: int) -> Callable[[], bool]:
        state: dict[str, dict[str, set[str]]] = {}

        def check() -> bool:
            if self.imported() < count:
                return False
            if "expected" not in state:
                state["expected"] = self.expected()
            exported = self.exported()
            return all(exported[a] >= state["expected"][a] for a in self.accounts)

        return check

    def target_files(self, account: str) -> list[Path]:
        return [p for p in (self.targets / account).rglob("*") if p.is_file()]


@pytest.fixture
def cluster_factory(tmp_path: Path, pg_url: str, daemon_env: dict[str, str]) -> Any:
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path, pg_url, daemon_env, **kwargs)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.kill_all()


def _assert_exactly_once(cluster: Cluster, count: int) -> None:
    expected = cluster.expected()
    assert sum(len(v) for v in expected.values()) > count  # the restrictions differ
    assert len({frozenset(v) for v in expected.values()}) == len(expected)
    exported = cluster.exported()
    for account in cluster.accounts:
        assert exported[account] == expected[account], account
        files = cluster.target_files(account)
        assert len(files) == len(expected[account]), account
        assert not [f for f in files if ".invoicesync-tmp-" in f.name], account
    with cluster.engine().connect() as conn:
        states = dict(
            conn.execute(sa.text("SELECT state, count(*) FROM ledger GROUP BY state")).all()
        )
    assert states == {"exported": sum(len(v) for v in expected.values())}


def test_three_nodes_export_every_eligible_document_once_per_account(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(count=DOCS)
    nodes = [cluster.start("node1", "run"), cluster.start("node2", "worker")]
    nodes.append(cluster.start("node3", "worker"))
    cluster.wait_until("every account exported", cluster.all_exported(DOCS))
    for node in nodes:
        assert node.stop()[0] == 0
    _assert_exactly_once(cluster, DOCS)
    # Each (account, document) was exported by exactly one node, once.
    done = Counter(
        (e["account"], e["document"]) for n in nodes for e in n.named("document.exported")
    )
    assert set(done.values()) == {1}
    assert sum(done.values()) == sum(len(v) for v in cluster.expected().values())
    for node in nodes:
        node.check_logs()


def test_a_killed_node_s_work_is_finished_by_the_others_exactly_once(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 300
    cluster = cluster_factory(count=count, workers=4)
    pause = cluster.tmp / "pause"
    pause.mkdir()
    first = cluster.start(
        "node1",
        "run",
        INVOICESYNC_TEST_PAUSE_DIR=str(pause),
        INVOICESYNC_TEST_PAUSE_ON="exported",
    )
    marker = pause / f"paused-{first.proc.pid}"
    first.wait_for(lambda _e: marker.exists(), what="node1 paused mid-export")
    others = [cluster.start("node2", "worker"), cluster.start("node3", "worker")]
    for node in others:
        node.wait_event("queue.worker_started")
    first.proc.kill()  # SIGKILL: no goodbye, its jobs stay "doing", its locks die with it
    first.proc.wait(30)
    # The pause comes after node1's first committed batch of exports (group
    # commit), which may already hold all of an account's documents: wait
    # for the requeue itself, not only for everything to be exported.
    cluster.wait_until(
        "a job of the dead node queued again",
        lambda: any(n.named("queue.job_requeued") for n in others),
    )
    cluster.wait_until("the others finished", cluster.all_exported(count))
    requeued = [e for n in others for e in n.named("queue.job_requeued")]
    assert requeued, "no job of the dead node was queued again"
    for node in others:
        assert node.stop()[0] == 0
    _assert_exactly_once(cluster, count)
    # The survivors never exported a document twice (the dead node's last one,
    # if it died between intent and outcome, went out again under the same
    # name: one file).
    done = Counter(
        (e["account"], e["document"]) for n in others for e in n.named("document.exported")
    )
    assert set(done.values()) <= {1}
    for node in others:
        node.check_logs()


def test_three_nodes_with_one_schedule_make_one_run_per_tick(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(
        count=5,
        accounts={"everything": {}},
        account_schedule={"every": "1h"},
    )
    nodes = [cluster.start(f"node{i}", "run") for i in (1, 2, 3)]
    # Every node's first tick (interval jobs fire once at the start).
    for node in nodes:
        for job in ("import:demo", "export:everything"):
            node.wait_event("job.deferred", job=job, reason="schedule")
    cluster.wait_until(
        "both runs finished",
        lambda: all(
            any(n.named(name) for n in nodes) for name in ("import.finished", "export.finished")
        ),
    )
    ticks = [e for n in nodes for e in n.named("job.deferred") if e["reason"] == "schedule"]
    assert Counter((e["job"], e["leader"]) for e in ticks) == {
        ("import:demo", True): 1,
        ("import:demo", False): 2,
        ("export:everything", True): 1,
        ("export:everything", False): 2,
    }
    for node in nodes:
        assert node.stop()[0] == 0
    with cluster.engine().connect() as conn:
        runs = Counter(
            conn.execute(sa.text("SELECT kind || ':' || subject FROM runs")).scalars().all()
        )
    assert runs == {"import:demo": 1, "export:everything": 1}
    for node in nodes:
        node.check_logs()


def test_retry_on_one_node_while_another_exports_the_account(
    cluster_factory: Callable[..., Cluster],
) -> None:
    count = 40
    cluster = cluster_factory(count=count, accounts={"everything": {}})
    pause = cluster.tmp / "pause"
    pause.mkdir()
    first = cluster.start(
        "node1", "run", INVOICESYNC_TEST_PAUSE_DIR=str(pause), INVOICESYNC_TEST_PAUSE_ON="exported"
    )
    first.wait_for(lambda _e: (pause / f"paused-{first.proc.pid}").exists(), what="paused")
    # Another node (its own state folder): the advisory lock, not a file, says busy.
    config = cluster.config("node2")
    refused = run_cli(cluster.env, config, "retry", "everything")
    assert refused.returncode == EXIT_BUSY, refused.stdout + refused.stderr
    assert f"invoicesync run (pid {first.proc.pid})" in refused.stdout
    retry = DaemonProcess(
        config, cluster.env, ["retry", "everything", "--wait"], stdout=cluster.tmp / "retry.txt"
    )
    cluster.procs.append(retry)
    retry.wait_event("run.busy", account="everything", waiting=True, holder_command="run")
    (pause / "go").write_text("")
    assert retry.proc.wait(120) == 0
    cluster.wait_until("all exported", cluster.all_exported(count))
    assert first.stop()[0] == 0
    assert "everything: 0 exported" in (cluster.tmp / "retry.txt").read_text()
    _exactly_once_simple(cluster, count)
    first.check_logs()
    retry.check_logs()


def _exactly_once_simple(cluster: Cluster, count: int) -> None:
    assert cluster.exported() == {"everything": cluster.expected()["everything"]}
    assert len(cluster.target_files("everything")) == count


def test_blobs_in_s3_are_shared_by_the_nodes(
    cluster_factory: Callable[..., Cluster], s3_server: S3Server
) -> None:
    bucket = s3_server.new_bucket()
    count = 20
    cluster = cluster_factory(
        count=count, accounts={"everything": {}}, blobs=f"s3://{bucket}/invoicesync/blobs"
    )
    s3_env = {
        "AWS_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    cluster.env = {**cluster.env, **s3_env}
    # One node imports (no worker: `run --no-work` only schedules), another exports.
    scheduler = cluster.start("node1", "run", "--no-work")
    worker = cluster.start("node2", "worker")
    cluster.wait_until("all exported", cluster.all_exported(count))
    for node in (scheduler, worker):
        assert node.stop()[0] == 0
    assert not scheduler.named("document.exported") and not scheduler.named("document.imported")
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == count
    for key in keys:
        prefix, sha = key.rsplit("/", 1)
        assert prefix == f"invoicesync/blobs/{sha[:2]}/{sha[2:4]}"
    exported = {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in cluster.target_files("everything")
    }
    assert exported == {k.rsplit("/", 1)[1] for k in keys}
    assert not (cluster.tmp / "shared-blobs").exists()
    scheduler.check_logs()
    worker.check_logs()


def test_a_dry_run_on_postgresql_fetches_into_a_scratch_schema(
    cluster_factory: Callable[..., Cluster],
) -> None:
    cluster = cluster_factory(count=5, accounts={"everything": {}})
    config = cluster.config("node1")
    assert run_cli(cluster.env, config, "fetch").returncode == 0
    cluster.data["sources"][0]["options"]["count"] = 8
    config = cluster.config("node1")
    dry = run_cli(cluster.env, config, "sync", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "import demo: 3 new" in dry.stdout
    assert "export everything: 8 would be exported" in dry.stdout
    assert "plans from the catalog" not in dry.stderr
    assert cluster.imported() == 5 and cluster.exported() == {"everything": set()}
    with cluster.engine().connect() as conn:
        left = conn.execute(
            sa.text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'invoicesync_dry_run_%'")
        ).scalar_one()
        runs = conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
    assert left == 0 and runs == 1  # the real fetch only
