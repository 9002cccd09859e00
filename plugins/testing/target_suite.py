"""The conformance suite every export target passes (SPEC sections 3 and 8).

What it proves, whatever the remote side is: re-exporting the same revision
leaves one file with the same content and reference; a new revision replaces
the old one atomically; a hostile remote name never lands outside the root; a
failed upload leaves no partial file behind and is a
:class:`~invoicesync.plugins.TransientError`; large documents round-trip byte
for byte; exports from several threads at once all land; a broken
configuration fails ``check()`` without leaking the secret.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import pytest

from ..connectors import ExportItem, ExportResult, Target
from ..errors import ConnectorError, PermanentError, TransientError
from ._base import (
    ConformanceBase,
    assert_check_fails_cleanly,
    assert_no_secret,
    formatted,
    missing_fixture,
)
from .helpers import make_export_item

__all__ = ["HOSTILE_NAMES", "TargetConformance"]

ReadRemote = Callable[[str], "bytes | None"]
ListRemote = Callable[[], "list[str]"]

# ``{outside}`` is replaced by the absolute path of an empty directory outside
# the target's root: an absolute name that pointed anywhere real (/etc/passwd)
# could destroy the machine running the tests, which are often run as root.
_OUTSIDE = "{outside}"

#: Remote names no sane engine produces, given straight to ``export()``:
#: (test id, name). Each must be refused with PermanentError or stored inside the root.
HOSTILE_NAMES: tuple[tuple[str, str], ...] = (
    ("dotdot-etc-passwd", "../../etc/passwd"),
    ("dotdot-parent", "../escaped.pdf"),
    ("dotdot-inside-path", "acme/../../escaped.pdf"),
    ("dotdot-only", ".."),
    ("absolute", _OUTSIDE + "/absolute.pdf"),
    ("nul-byte", "nul\x00byte.pdf"),
    ("backslashes", "..\\..\\escaped-backslash.pdf"),
    ("long-component", "x" * 300 + ".pdf"),
    ("long-directory", "acme/" + "y" * 300 + "/file.pdf"),
    ("control-chars", "new\nline\x1b[31m.pdf"),
)

UNICODE_NAME = "Müller & Söhne GmbH/2024/Rechnung Nr. 1 (Kopie) #2.pdf"


def _files_under(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root, followlinks=False)
        for f in files
    }


@dataclass
class _LocalWatch:
    """Where a naive target would have written if it joined hostile names blindly."""

    root: Path
    outside: Path
    spots: list[Path]
    neighbours: set[str]

    @classmethod
    def start(cls, root: Path, outside: Path, name: str) -> _LocalWatch:
        spots = []
        for variant in {name, name.replace("\\", "/")}:
            if "\x00" in variant:
                continue
            landing = Path(os.path.normpath(os.path.join(root, variant)))
            # An existing directory (``..`` is the root's parent) cannot be
            # overwritten by a file; the neighbour scan covers what lands in it.
            if not landing.is_relative_to(root) and not landing.exists():
                spots.append(landing)
        return cls(
            root, outside, spots, _files_under(root.parent) if root.parent != root else set()
        )

    def verify(self) -> None:
        escaped = [str(spot) for spot in self.spots if spot.exists()]
        assert not escaped, f"the target wrote outside its root: {escaped}"
        assert not _files_under(self.outside), (
            f"the target wrote into {self.outside}: {sorted(_files_under(self.outside))}"
        )
        new_neighbours = {
            p
            for p in _files_under(self.root.parent) - self.neighbours
            if not Path(p).parts or Path(p).parts[0] != self.root.name
        }
        assert not new_neighbours, (
            f"the target created files beside its root {self.root}: {sorted(new_neighbours)}"
        )
        real_root = os.path.realpath(self.root)
        for rel in _files_under(self.root):
            real = os.path.realpath(os.path.join(self.root, rel))
            assert real == real_root or real.startswith(real_root + os.sep), (
                f"{rel} inside the root resolves outside it: {real}"
            )


class TargetConformance(ConformanceBase):
    """Subclass in a test module and define the fixtures below to test a target.

    Required fixtures: ``target``, ``read_remote``, ``list_remote``,
    ``broken_target``. Optional: ``secret`` (the password ``broken_target``
    uses, checked never to appear in errors) and ``local_root`` (the local
    directory the remote side stores files in -- the target's folder, or the
    test server's root -- which lets the suite check the real file tree for
    escapes and temporary files).

    ``remote_names_are_paths = False`` for targets that store the name as a
    label rather than a path (a Paperless title, a mail subject): then
    ``list_remote`` may show a hostile name verbatim, as it cannot escape.
    """

    remote_names_are_paths: ClassVar[bool] = True
    #: Size of the document in ``test_large_document_round_trips``.
    large_size: ClassVar[int] = 5 * 1024 * 1024
    #: Threads exporting distinct names at once in ``test_concurrent_exports``.
    concurrency: ClassVar[int] = 6

    # -- fixtures the connector's test class provides ------------------------

    @pytest.fixture
    def target(self) -> Target[Any]:
        """A configured, working target whose ``check()`` passes; empty at the start."""
        missing_fixture("TargetConformance", "target", "a working, empty Target instance")

    @pytest.fixture
    def read_remote(self) -> ReadRemote:
        """``name -> bytes | None``: the content stored under a remote name, None if absent."""
        missing_fixture(
            "TargetConformance", "read_remote", "name -> stored bytes, or None if absent"
        )

    @pytest.fixture
    def list_remote(self) -> ListRemote:
        """``() -> list[str]``: every stored name, temporary files included if visible."""
        missing_fixture(
            "TargetConformance",
            "list_remote",
            "() -> every stored name (relative POSIX paths), temporary files included",
        )

    @pytest.fixture
    def broken_target(self) -> Target[Any]:
        """A target with bad credentials or an unreachable endpoint."""
        missing_fixture(
            "TargetConformance",
            "broken_target",
            "a Target with bad credentials or an unreachable endpoint",
        )

    @pytest.fixture
    def secret(self) -> str | None:
        """The password ``broken_target`` was configured with (None: nothing to leak)."""
        return None

    @pytest.fixture
    def local_root(self) -> Path | None:
        """The local directory the remote side stores files in, if there is one."""
        return None

    # -- suite internals ----------------------------------------------------

    @pytest.fixture
    def items_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        # Outside the author's tmp_path, so that content files are never
        # mistaken for something the target wrote next to its root.
        return tmp_path_factory.mktemp("conformance-items")

    @pytest.fixture
    def outside_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return tmp_path_factory.mktemp("conformance-outside")

    @pytest.fixture
    def _closing(self, target: Target[Any]) -> Iterator[Target[Any]]:
        yield target
        target.close()

    # -- the tests ------------------------------------------------------------

    def test_check_passes(self, _closing: Target[Any]) -> None:
        """``check()`` passes on the working target."""
        _closing.check()

    def test_export_round_trips(
        self, target: Target[Any], read_remote: ReadRemote, list_remote: ListRemote, items_dir: Path
    ) -> None:
        """An export stores the content under the remote name and returns a non-empty remote_ref."""
        item = make_export_item(items_dir, b"%PDF-1.4 round trip\n", "acme/2024/R-1.pdf")
        result = target.export(item)
        _assert_result(result)
        assert read_remote(item.remote_name) == b"%PDF-1.4 round trip\n"
        assert item.remote_name in list_remote()

    def test_reexport_same_revision_leaves_one_file(
        self, target: Target[Any], read_remote: ReadRemote, list_remote: ListRemote, items_dir: Path
    ) -> None:
        """Exporting the same revision three times (with and without previous_ref) leaves one file
        and reports one remote_ref.
        """
        before = Counter(list_remote())
        item = make_export_item(items_dir, b"%PDF-1.4 same\n", "acme/2024/same.pdf")
        first = target.export(item)
        # At-least-once delivery: the engine may hand the same item over again
        # after a crash, with the reference it has (or without one).
        again = ExportItem(item.document, item.remote_name, item.content_path, first.remote_ref)
        second = target.export(again)
        third = target.export(item)
        _assert_result(second)
        assert second.remote_ref == first.remote_ref == third.remote_ref, (
            "re-exporting the same revision must report the same remote reference"
        )
        # Counted, not as sets: a target that stores a name twice (two
        # documents with one title) must not pass.
        added = Counter(list_remote()) - before
        assert added == Counter([item.remote_name]), (
            f"expected exactly one new remote file, found {sorted(added.elements())}"
        )
        assert read_remote(item.remote_name) == b"%PDF-1.4 same\n"

    def test_new_revision_replaces_content(
        self, target: Target[Any], read_remote: ReadRemote, list_remote: ListRemote, items_dir: Path
    ) -> None:
        """A new revision under the same name replaces the content; still one file."""
        before = Counter(list_remote())
        v1 = make_export_item(items_dir, b"%PDF-1.4 revision 1\n", "acme/rev.pdf")
        ref1 = target.export(v1).remote_ref
        v2 = make_export_item(
            items_dir,
            b"%PDF-1.4 revision 2, longer\n",
            "acme/rev.pdf",
            previous_ref=ref1,
            external_id=v1.document.external_id,
            revision=2,
        )
        _assert_result(target.export(v2))
        assert read_remote("acme/rev.pdf") == b"%PDF-1.4 revision 2, longer\n"
        added = Counter(list_remote()) - before
        assert added == Counter(["acme/rev.pdf"]), (
            f"a new revision must replace the old file, found {sorted(added.elements())}"
        )

    def test_distinct_names_are_distinct_files(
        self, target: Target[Any], read_remote: ReadRemote, items_dir: Path
    ) -> None:
        """Three names give three files and three references."""
        a = make_export_item(items_dir, b"%PDF-1.4 A\n", "acme/2024/a.pdf")
        b = make_export_item(items_dir, b"%PDF-1.4 B\n", "acme/2024/b.pdf")
        c = make_export_item(items_dir, b"%PDF-1.4 C\n", "other/c.pdf")
        refs = {target.export(x).remote_ref for x in (a, b, c)}
        assert len(refs) == 3, "three documents under three names need three references"
        assert read_remote("acme/2024/a.pdf") == b"%PDF-1.4 A\n"
        assert read_remote("acme/2024/b.pdf") == b"%PDF-1.4 B\n"
        assert read_remote("other/c.pdf") == b"%PDF-1.4 C\n"

    def test_unicode_name_round_trips(
        self, target: Target[Any], read_remote: ReadRemote, items_dir: Path
    ) -> None:
        """A name with umlauts, spaces, ``&``, ``#`` and parentheses round-trips."""
        item = make_export_item(items_dir, b"%PDF-1.4 unicode\n", UNICODE_NAME)
        _assert_result(target.export(item))
        assert read_remote(UNICODE_NAME) == b"%PDF-1.4 unicode\n"

    def test_large_document_round_trips(
        self, target: Target[Any], read_remote: ReadRemote, items_dir: Path
    ) -> None:
        """A 5 MiB document (``large_size``) is stored byte for byte."""
        content = b"%PDF-1.4\n" + random.Random(5).randbytes(self.large_size)
        item = make_export_item(items_dir, content, "acme/large.pdf")
        _assert_result(target.export(item))
        stored = read_remote("acme/large.pdf")
        assert stored is not None, "the large document is missing"
        assert len(stored) == len(content), f"stored {len(stored)} of {len(content)} bytes"
        assert stored == content, "the large document was stored with different bytes"

    def test_concurrent_exports(
        self, target: Target[Any], read_remote: ReadRemote, list_remote: ListRemote, items_dir: Path
    ) -> None:
        """Exports of distinct names from several threads at once (an account's
        ``concurrency:``) all succeed and land, even in a folder that is new to all of them."""
        before = Counter(list_remote())
        items = [
            make_export_item(items_dir, b"%%PDF-1.4 parallel %d\n" % i, f"acme/parallel/{i}.pdf")
            for i in range(self.concurrency)
        ]
        for result in _all_at_once(target, items):
            _assert_result(result)
        for i, item in enumerate(items):
            assert read_remote(item.remote_name) == b"%%PDF-1.4 parallel %d\n" % i
        added = Counter(list_remote()) - before
        expected = Counter(i.remote_name for i in items)
        assert added == expected, f"expected one file per name, found {sorted(added.elements())}"

    def test_racing_on_one_name_leaves_one_intact_file(
        self, target: Target[Any], read_remote: ReadRemote, list_remote: ListRemote, items_dir: Path
    ) -> None:
        """Two threads exporting one revision under one name at once leave one intact file;
        one of them may lose the race with a TransientError, never both."""
        before = Counter(list_remote())
        item = make_export_item(items_dir, b"%PDF-1.4 raced\n", "acme/raced.pdf")
        outcomes = _all_at_once(target, [item, item], tolerate=TransientError)
        assert any(isinstance(o, ExportResult) for o in outcomes), (
            f"both racing exports failed: {outcomes}"
        )
        for outcome in outcomes:
            if isinstance(outcome, ExportResult):
                _assert_result(outcome)
        assert read_remote(item.remote_name) == b"%PDF-1.4 raced\n"
        added = Counter(list_remote()) - before
        assert added == Counter([item.remote_name]), (
            f"expected one file, found {sorted(added.elements())}"
        )

    @pytest.mark.parametrize(
        "hostile", [name for _, name in HOSTILE_NAMES], ids=[i for i, _ in HOSTILE_NAMES]
    )
    def test_hostile_name_stays_inside(
        self,
        hostile: str,
        target: Target[Any],
        list_remote: ListRemote,
        local_root: Path | None,
        items_dir: Path,
        outside_dir: Path,
    ) -> None:
        """Each name in HOSTILE_NAMES is refused with PermanentError or stored inside the root
        (checked on disk with ``local_root``).
        """
        name = hostile.replace(_OUTSIDE, str(outside_dir))
        item = make_export_item(items_dir, b"%PDF-1.4 hostile\n", name)
        watch = _LocalWatch.start(local_root.resolve(), outside_dir, name) if local_root else None
        before = Counter(list_remote())
        try:
            result = target.export(item)
        except PermanentError:
            # Refusing the name for good is a correct answer -- a clean one.
            left = Counter(list_remote()) - before
            assert not left, f"refusing {name!r} left files behind: {sorted(left.elements())}"
        except Exception as exc:
            pytest.fail(
                f"export({name!r}) must either store the file inside the root or raise "
                f"PermanentError, not:\n{formatted(exc)}",
                pytrace=False,
            )
        else:
            _assert_result(result)
        if watch is not None:
            watch.verify()
        if self.remote_names_are_paths:
            for stored in list_remote():
                path = PurePosixPath(stored)
                assert not path.is_absolute(), f"list_remote shows an absolute name {stored!r}"
                assert ".." not in path.parts, f"list_remote shows a name escaping: {stored!r}"
                assert "\x00" not in stored, f"list_remote shows a NUL byte in {stored!r}"

    def test_barrier_may_be_called_at_any_time(
        self, target: Target[Any], read_remote: ReadRemote, items_dir: Path
    ) -> None:
        """``barrier()`` (API 1.3) works with nothing pending, and after exports leaves them
        in place (the engine calls it when ``defers_durability`` is set).
        """
        target.barrier()
        item = make_export_item(items_dir, b"%PDF-1.4 durable\n", "acme/durable.pdf")
        _assert_result(target.export(item))
        target.barrier()
        target.barrier()
        assert read_remote("acme/durable.pdf") == b"%PDF-1.4 durable\n"

    def test_failed_upload_leaves_no_partial_file(
        self,
        target: Target[Any],
        read_remote: ReadRemote,
        list_remote: ListRemote,
        local_root: Path | None,
        items_dir: Path,
    ) -> None:
        """Content that fails to read half-way raises TransientError and leaves no file, not even a
        temporary one; the next export succeeds.
        """
        content = b"%PDF-1.4\n" + random.Random(7).randbytes(2 * 1024 * 1024)
        before = Counter(list_remote())
        local_before = _files_under(local_root) if local_root else set()
        broken = make_export_item(
            items_dir, content, "acme/interrupted.pdf", fail_after=len(content) // 2
        )
        with pytest.raises(ConnectorError) as caught:
            target.export(broken)
        assert isinstance(caught.value, TransientError), (
            "a read failure of the local content is worth retrying: expected "
            f"TransientError, got {type(caught.value).__name__}: {caught.value}"
        )
        left = Counter(list_remote()) - before
        assert not left, f"a failed upload left files behind: {sorted(left.elements())}"
        assert read_remote("acme/interrupted.pdf") is None
        if local_root is not None:
            stray = _files_under(local_root) - local_before
            assert not stray, f"a failed upload left files in {local_root}: {sorted(stray)}"
        # The failure must not poison the target: the next export just works.
        good = make_export_item(items_dir, content, "acme/interrupted.pdf")
        _assert_result(target.export(good))
        assert read_remote("acme/interrupted.pdf") == content

    def test_failed_upload_keeps_previous_revision(
        self, target: Target[Any], read_remote: ReadRemote, list_remote: ListRemote, items_dir: Path
    ) -> None:
        """A failed upload of a new revision leaves the previous content intact."""
        v1 = make_export_item(items_dir, b"%PDF-1.4 old revision\n", "acme/kept.pdf")
        ref1 = target.export(v1).remote_ref
        listed = Counter(list_remote())
        content = b"%PDF-1.4\n" + random.Random(9).randbytes(1024 * 1024)
        v2 = make_export_item(
            items_dir, content, "acme/kept.pdf", previous_ref=ref1, fail_after=len(content) // 2
        )
        with pytest.raises(TransientError):
            target.export(v2)
        assert read_remote("acme/kept.pdf") == b"%PDF-1.4 old revision\n", (
            "a failed upload of a new revision must leave the previous one intact"
        )
        assert Counter(list_remote()) == listed, "a failed upload changed the remote listing"

    def test_broken_target_check_raises(
        self, broken_target: Target[Any], secret: str | None
    ) -> None:
        """``check()`` on ``broken_target`` raises ConnectorError with a message, without the
        secret.
        """
        assert_check_fails_cleanly(broken_target, secret, "target")

    def test_broken_target_export_raises_connector_error(
        self, broken_target: Target[Any], secret: str | None, items_dir: Path
    ) -> None:
        """``export()`` on ``broken_target`` raises ConnectorError, without the secret."""
        item = make_export_item(items_dir, b"%PDF-1.4 broken\n", "acme/broken.pdf")
        try:
            with pytest.raises(ConnectorError) as caught:
                broken_target.export(item)
        finally:
            broken_target.close()
        assert_no_secret(caught.value, secret, "export() on a broken target")

    @pytest.mark.parametrize(
        "component", ["invoice.pdf", "Rechnung: Nr #1?.pdf", "Ünïcödé  spaces.pdf", "a" * 255]
    )
    def test_sanitize_component(self, target: Target[Any], component: str) -> None:
        """``sanitize_component`` returns a non-empty component without ``/`` or NUL and is
        idempotent.
        """
        clean = target.sanitize_component(component)
        assert isinstance(clean, str) and clean, "sanitize_component must return a non-empty str"
        assert "/" not in clean and "\x00" not in clean
        assert target.sanitize_component(clean) == clean, "sanitize_component must be idempotent"


def _all_at_once(
    target: Target[Any], items: list[ExportItem], tolerate: type[Exception] | None = None
) -> list[ExportResult | Exception]:
    """Export every item on its own thread, all released at the same moment."""
    barrier = threading.Barrier(len(items))

    def export(item: ExportItem) -> ExportResult | Exception:
        barrier.wait(timeout=30)
        try:
            return target.export(item)
        except Exception as exc:
            if tolerate is not None and isinstance(exc, tolerate):
                return exc
            raise

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(export, items))


def _assert_result(result: object) -> None:
    assert isinstance(result, ExportResult), f"export() must return ExportResult, got {result!r}"
    assert isinstance(result.remote_ref, str) and result.remote_ref, (
        "ExportResult.remote_ref must be a non-empty str"
    )
