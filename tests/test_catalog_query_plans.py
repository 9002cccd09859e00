"""The catalog's duplicate lookups are index searches, not walks of the table.

Nearly every document is an original (``duplicate_of IS NULL``), so an index
on that column narrows nothing down; SQLite's planner, without statistics,
still chose it over the sha256 and business_key indexes, and every lookup of
a first import walked all earlier documents (quadratic in N: about 15 s of a
100,000-document import, see docs/performance.md). These tests read SQLite's
own query plan for each lookup the importer runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from invoicesync.daemon.storage import catalog
from invoicesync.daemon.storage.schema import metadata


@pytest.fixture()
def engine(tmp_path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}")
    metadata.create_all(engine)
    return engine


def _plan(engine: sa.Engine, query: sa.Select[Any], params: dict[str, Any]) -> list[str]:
    sql = str(query.params(**params).compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


@pytest.mark.parametrize(("with_key", "with_date"), sorted(catalog._FIND_ORIGINAL))
def test_finding_a_documents_original_searches_by_hash_or_business_key(
    engine: sa.Engine, with_key: bool, with_date: bool
) -> None:
    params = {"sha": "a" * 64, "source_id": "s", "key": "k", "doc_id": "s/x"}
    if with_date:
        params["imported"] = None
    plan = _plan(engine, catalog._FIND_ORIGINAL[with_key, with_date], params)
    assert not any("ix_documents_duplicate_of" in step for step in plan), plan
    assert any("ix_documents_sha256" in step for step in plan), plan
    if with_key:
        assert any("ix_documents_business_key" in step for step in plan), plan


@pytest.mark.parametrize("keys", [[], ["k1", "k2"]], ids=["no business keys", "business keys"])
def test_a_batch_asks_for_originals_of_its_hashes_and_keys_through_their_indexes(
    engine: sa.Engine, keys: list[str]
) -> None:
    plan = _plan(engine, catalog._ANY_ORIGINAL, {"shas": ["a" * 64, "b" * 64], "keys": keys})
    assert not any("ix_documents_duplicate_of" in step for step in plan), plan
    assert any("ix_documents_sha256" in step for step in plan), plan
