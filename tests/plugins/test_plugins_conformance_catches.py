"""The conformance suite fails connectors that break the contract, and says why.

Each case runs the suite in a nested pytest session (pytester) against a
connector with one deliberate bug and checks exactly which tests fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

TARGET_TESTS = {
    "test_check_passes",
    "test_export_round_trips",
    "test_reexport_same_revision_leaves_one_file",
    "test_new_revision_replaces_content",
    "test_distinct_names_are_distinct_files",
    "test_unicode_name_round_trips",
    "test_large_document_round_trips",
    "test_failed_upload_leaves_no_partial_file",
    "test_failed_upload_keeps_previous_revision",
    "test_broken_target_check_raises",
    "test_broken_target_export_raises_connector_error",
}


def run_suite(pytester: pytest.Pytester, body: str) -> tuple[dict[str, str], str]:
    """Run a test module in a nested session: outcome per test name, and the output."""
    pytester.syspathinsert(HERE)
    pytester.makepyfile(
        test_subject="import pytest\n"
        "from reference_connectors import *\n"
        "from defective_connectors import *\n"
        "from invoicesync.plugins.testing import SourceConformance, TargetConformance\n" + body
    )
    result = pytester.runpytest_inprocess(
        "-rs", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio"
    )
    outcomes: dict[str, str] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        name = report.nodeid.rsplit("::", 1)[-1]
        # A test's worst phase (setup, call, teardown) is its outcome.
        if outcomes.get(name) not in ("failed", "skipped"):
            outcomes[name] = report.outcome
    return outcomes, result.stdout.str()


def failed(outcomes: dict[str, str]) -> set[str]:
    return {name for name, outcome in outcomes.items() if outcome == "failed"}


def hostile(*ids: str) -> set[str]:
    return {f"test_hostile_name_stays_inside[{i}]" for i in ids}


def test_the_reference_target_passes_everything(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester, "class TestT(FolderTargetFixtures, TargetConformance):\n    pass\n"
    )
    assert set(outcomes) >= TARGET_TESTS
    assert not failed(outcomes), out


def test_non_atomic_writes_are_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        "    target_class = NonAtomicTarget\n",
    )
    assert failed(outcomes) == {
        "test_failed_upload_leaves_no_partial_file",
        "test_failed_upload_keeps_previous_revision",
    }, out
    assert "a failed upload left files behind" in out


def test_escaping_names_are_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        "    target_class = NaiveJoinTarget\n",
    )
    # ".." fails rename with EBUSY (classified transient) and the long directory
    # fails mkdir unclassified: both are wrong answers to a hostile name.
    assert failed(outcomes) == hostile(
        "dotdot-etc-passwd",
        "dotdot-parent",
        "dotdot-inside-path",
        "dotdot-only",
        "absolute",
        "nul-byte",
        "long-directory",
    ), out
    assert "the target wrote outside its root" in out
    assert "must either store the file inside the root or raise PermanentError" in out


def test_escapes_are_caught_from_list_remote_without_a_local_root(
    pytester: pytest.Pytester,
) -> None:
    # Without local_root the suite can only look at what list_remote shows;
    # a listing that reports escaped names must still fail.
    outcomes, out = run_suite(
        pytester,
        "import os\n"
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        "    target_class = NaiveJoinTarget\n"
        "    @pytest.fixture\n"
        "    def local_root(self):\n"
        "        return None\n"
        "    @pytest.fixture\n"
        "    def list_remote(self, tmp_path):\n"
        "        root = tmp_path / 'remote'\n"
        "        root.mkdir(exist_ok=True)\n"
        "        def listing():\n"
        "            return [os.path.relpath(os.path.join(d, f), root)\n"
        "                    for d, _, fs in os.walk(tmp_path.parent) for f in fs\n"
        "                    if 'conformance' not in d]\n"
        "        return listing\n"
        "    @pytest.fixture\n"
        "    def target(self, tmp_path):\n"
        "        (tmp_path / 'remote').mkdir(exist_ok=True)\n"
        "        return self.target_class('t', FolderOptions(path=tmp_path / 'remote'), None)\n",
    )
    assert hostile("dotdot-parent", "dotdot-inside-path") <= failed(outcomes), out
    assert "list_remote shows a name escaping" in out


def test_duplicates_on_reexport_are_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        "    target_class = DuplicatingTarget\n",
    )
    assert {
        "test_reexport_same_revision_leaves_one_file",
        "test_new_revision_replaces_content",
    } <= failed(outcomes), out


@pytest.mark.parametrize("target_class", ["LeakyTarget", "LeakyCauseTarget"])
def test_secrets_in_errors_are_caught(pytester: pytest.Pytester, target_class: str) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        f"    target_class = {target_class}\n"
        "    @pytest.fixture\n"
        "    def secret(self):\n"
        "        return 'missing'\n",
    )
    assert "test_broken_target_check_raises" in failed(outcomes), out
    assert "contains the secret" in out


def test_unclassified_errors_are_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        "    target_class = RawErrorTarget\n",
    )
    assert failed(outcomes) == {"test_broken_target_export_raises_connector_error"}, out


def test_files_left_by_a_refused_name_are_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestT(FolderTargetFixtures, TargetConformance):\n"
        "    target_class = LitteringTarget\n",
    )
    assert failed(outcomes) == hostile("nul-byte"), out
    assert "left files behind" in out


def test_the_reference_source_passes_everything(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester, "class TestS(MemorySourceFixtures, SourceConformance):\n    pass\n"
    )
    assert len(outcomes) == 8 and not failed(outcomes), out


def test_a_source_that_ignores_its_cursor_is_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n"
        "    source_class = CursorIgnoringSource\n",
    )
    assert failed(outcomes) == {
        "test_resume_after_interruption[1]",
        "test_resume_after_interruption[2]",
    }, out
    assert "were yielded again" in out


def test_a_source_that_loses_documents_on_resume_is_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n    source_class = LosingSource\n",
    )
    assert "test_resume_after_interruption[1]" in failed(outcomes), out
    assert "lost documents" in out


def test_malformed_documents_are_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n"
        "    source_class = BadItemsSource\n",
    )
    assert "test_documents_are_valid" in failed(outcomes), out
    assert "filename must be a bare file name" in out


def test_metadata_that_skipped_validation_is_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n"
        "    source_class = UnvalidatedMetadataSource\n",
    )
    assert "test_documents_are_valid" in failed(outcomes), out
    assert "metadata is not valid" in out and "ISO 4217" in out


def test_a_fetch_that_is_not_a_generator_is_caught(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n    source_class = ListSource\n",
    )
    assert "test_documents_are_valid" in failed(outcomes), out
    assert "fetch() must be a generator" in out


def test_unsupported_tests_skip_with_the_stated_reason(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n"
        "    unsupported = {'test_new_document_after_cursor': 'the portal is read-only'}\n"
        "    @pytest.fixture\n"
        "    def add_document(self):\n"
        "        return None\n",
    )
    assert outcomes["test_new_document_after_cursor"] == "skipped"
    assert "the portal is read-only" in out
    assert not failed(outcomes), out


def test_a_missing_add_document_without_a_reason_fails(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(
        pytester,
        "class TestS(MemorySourceFixtures, SourceConformance):\n"
        "    @pytest.fixture\n"
        "    def add_document(self):\n"
        "        return None\n",
    )
    assert failed(outcomes) == {"test_new_document_after_cursor"}, out
    assert "declare unsupported" in out


@pytest.mark.parametrize(
    ("unsupported", "message"),
    [
        ("{'test_check_passes': ''}", "must state a reason"),
        ("{'test_no_such_thing': 'because'}", "names tests that do not exist"),
    ],
)
def test_bad_unsupported_declarations_fail(
    pytester: pytest.Pytester, unsupported: str, message: str
) -> None:
    outcomes, out = run_suite(
        pytester,
        f"class TestS(MemorySourceFixtures, SourceConformance):\n    unsupported = {unsupported}\n",
    )
    assert "test_check_passes" in failed(outcomes), out
    assert message in out


def test_a_missing_fixture_is_named(pytester: pytest.Pytester) -> None:
    outcomes, out = run_suite(pytester, "class TestT(TargetConformance):\n    pass\n")
    assert "test_export_round_trips" in failed(outcomes)
    assert "needs a fixture 'target' on the test class" in out
