"""The export plan as a value (engine/plan.py) and its execution (exporter).

``plan()`` decides per candidate -- export under which name and why, or skip
and why -- and changes nothing; ``run_export`` carries a plan out, and a dry
run turns the same plan into its lines, choosing names by the same path.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from fixtures import memory_connectors as mem
from invoicesync.daemon.engine.exporter import run_export
from invoicesync.daemon.engine.plan import Action, ActionKind, name_choices, plan
from invoicesync.daemon.engine.runtime import Runtime
from invoicesync.daemon.engine.sync import fetch, sync
from invoicesync.daemon.storage.ledger import LedgerState
from invoicesync.daemon.storage.schema import ledger, runs

RESTRICTED = "    restrictions: {attributes: {types: [incoming_invoice]}}\n"


def _restricted_with_two_documents(make_runtime: Callable[..., Runtime]) -> Runtime:
    """An incoming invoice (eligible) and a receipt (excluded by type), imported."""
    mem.PORTAL["portal"] = [
        mem.item("a", b"A", company="acme", number="1", type="incoming_invoice"),
        mem.item("b", b"B", company="acme", number="2", type="receipt"),
    ]
    rt = make_runtime(RESTRICTED)
    fetch(rt)
    return rt


def _plan(rt: Runtime) -> list[Action]:
    account = rt.config.export("out")
    return list(plan(rt, account, mem.NOW, lambda part: part))


def _rows(rt: Runtime, table: sa.Table) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_plan_decides_each_candidate_and_changes_nothing(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = _restricted_with_two_documents(make_runtime)
    before = (_rows(rt, ledger), _rows(rt, runs))
    actions = _plan(rt)
    assert [(a.document.id, a.kind) for a in actions] == [
        ("portal/a", ActionKind.EXPORT),
        ("portal/b", ActionKind.SKIP),
    ]
    export, skip = actions
    assert export.remote_name == "acme/1.pdf" and not export.keeps_name
    assert export.reason == "new; passes attributes.types"
    assert skip.excluded_by == "attributes.types"
    assert skip.reason == "type receipt is not one of incoming_invoice"
    assert skip.remote_name is None
    # Planning wrote nothing: no ledger row, no run, nothing at the target.
    assert (_rows(rt, ledger), _rows(rt, runs)) == before
    assert mem.STORE == {}


def test_executing_the_plan_exports_the_planned_actions(
    make_runtime: Callable[..., Runtime],
) -> None:
    rt = _restricted_with_two_documents(make_runtime)
    summary = run_export(rt, rt.config.export("out"))
    assert summary.ok and summary.status == "ok"
    assert summary.counts["exported"] == 1
    assert mem.STORE["out"] == {"acme/1.pdf": b"A"}
    entry = rt.ledger.entry("out", "portal/a")
    assert entry is not None and entry.state is LedgerState.EXPORTED
    # Afterwards only the excluded document is still considered (it has no
    # ledger row); a changed revision goes again, under the name it holds.
    assert [(a.document.id, a.kind) for a in _plan(rt)] == [("portal/b", ActionKind.SKIP)]
    mem.PORTAL["portal"][0] = mem.item(
        "a", b"A2", company="acme", number="9", type="incoming_invoice"
    )
    fetch(rt)
    again, _ = _plan(rt)
    assert again.kind is ActionKind.EXPORT and again.keeps_name
    assert again.remote_name == "acme/1.pdf"
    assert again.reason.startswith("content changed (revision 2)")


def test_dry_run_and_real_run_choose_the_same_free_name(
    make_runtime: Callable[..., Runtime],
) -> None:
    """Two documents rendering one name: the plan names the template's name
    for both; carrying it out gives the second ``_{sha8}``, and a dry run
    prints exactly the names the real run then uses."""
    mem.PORTAL["portal"] = [
        mem.item("a", b"A", company="acme", number="1"),
        mem.item("b", b"B", company="acme", number="1"),
        mem.item("c", b"C", company="acme", number="1"),
    ]
    rt = make_runtime()
    fetch(rt)
    assert {a.remote_name for a in _plan(rt)} == {"acme/1.pdf"}
    # "a" already holds the plain name in the ledger, so both runs must skip it.
    doc_a = rt.catalog.get("portal/a")
    assert doc_a is not None
    rt.ledger.reserve("out", "portal/a", 1, doc_a.sha256, "acme/1.pdf", mem.NOW)

    dry = make_runtime(dry_run=True)
    planned: list[tuple[str, str]] = []
    sync(dry, fetch_first=True, on_plan=lambda p: planned.append((p.document_id, p.remote_name)))
    result = sync(rt, fetch_first=False)
    assert result.ok
    real = {name: content for name, content in mem.STORE["out"].items()}
    names = {doc: rt.ledger.entry("out", doc).remote_name for doc, _ in planned}  # type: ignore[union-attr]
    assert planned == [(doc, names[doc]) for doc, _ in planned]
    b = rt.catalog.get("portal/b")
    c = rt.catalog.get("portal/c")
    assert b is not None and c is not None
    assert dict(planned) == {
        "portal/a": "acme/1.pdf",
        "portal/b": f"acme/1_{b.sha8}.pdf",
        "portal/c": f"acme/1_{c.sha8}.pdf",
    }
    assert set(real) == set(dict(planned).values())


def test_name_choices_append_sha8_then_a_counter() -> None:
    from invoicesync.plugins.testing import make_document

    doc = make_document(external_id="x")
    choices = list(name_choices(doc, "a/b.pdf"))
    assert choices[:3] == ["a/b.pdf", f"a/b_{doc.sha8}.pdf", f"a/b_{doc.sha8}-2.pdf"]
    assert len(choices) == 100 and len(set(choices)) == 100
