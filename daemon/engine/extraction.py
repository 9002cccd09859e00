"""The extraction stage of an import: fields read from the content itself.

Runs after a source yielded a document and before the catalog commits it.
Precedence, strongest first:

1. what the source states explicitly (sidecar, portal API; the fields set in
   its ``DocumentMetadata``) and the source's ``assign_company`` rules;
2. extractors, by descending ``priority`` (the e-invoice extractor: 50);
3. heuristics (extractors with a lower priority).

Each extractor is isolated: one that raises, or overruns the source's
``extract_timeout``, is named in a ``document.extract_failed`` warning and the
document goes on with what it had. Company profiles listing VAT ids or names
turn an e-invoice into that company's incoming or sales invoice.
"""

from __future__ import annotations

import mimetypes
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from invoicesync.daemon.config.models import CompanyConfig, SourceConfig
from invoicesync.daemon.storage.catalog import Derived, ImportOutcome
from invoicesync.plugins.extractors import Extraction, ExtractionError, ExtractionInput, Extractor
from invoicesync.plugins.models import DocumentMetadata, DocumentType, SourceDocument

from .companies import assign_company, rule_matches
from .provenance import GUESSED

#: Provenance of a company set by an ``assign_company`` rule.
RULE_PROVENANCE = "assign_company rule"
#: Provenance of a field the source only guessed and no extractor replaced.
GUESS_PROVENANCE = GUESSED
_NOTHING = Derived()


@dataclass(frozen=True)
class Finding:
    """One extractor's result, or why it has none."""

    extractor: str
    extraction: Extraction | None = None
    error: str | None = None


def _run_isolated(
    fn: Callable[[], Any], timeout: float, name: str, done_with: Callable[[], None]
) -> Any:
    """``fn()`` in a daemon thread; TimeoutError if it overruns ``timeout``.

    A thread cannot be killed: an extractor stuck for good keeps its thread,
    but the import goes on and the process can still exit (daemon thread).
    ``done_with`` runs in that thread once ``fn`` has returned or raised, so
    what the extractor reads stays open for as long as it may read it.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            done_with()
            done.set()

    thread = threading.Thread(target=target, name=f"extractor-{name}", daemon=True)
    thread.start()
    if not done.wait(timeout):
        raise TimeoutError(f"took longer than {timeout:g} s; abandoned")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _own_handle(
    content: bytes | Path | BinaryIO,
) -> tuple[bytes | Path | BinaryIO, Callable[[], None]]:
    """The content through a descriptor of the extractor's own, and how to close it.

    An extractor that overruns its timeout is abandoned, not stopped, and may
    read on after the source has closed its file; the source's descriptor
    number may by then belong to another file. A duplicate (``os.dup``) that
    only the extractor's own thread closes can never point elsewhere.
    """
    if isinstance(content, bytes | Path):
        return content, lambda: None
    own = os.fdopen(os.dup(content.fileno()), "rb", buffering=0)
    return own, own.close


def _norm_vat(value: str) -> str:
    return "".join(ch for ch in value if ch.isalnum()).upper()


def _norm_name(value: str) -> str:
    return " ".join(value.split()).casefold()


class CompanyMatcher:
    """Company profiles by their VAT ids and names."""

    def __init__(self, companies: Sequence[CompanyConfig]) -> None:
        self.vat: dict[str, str] = {}
        self.names: dict[str, str] = {}
        for company in companies:
            for vat in company.vat_ids:
                self.vat.setdefault(_norm_vat(vat), company.id)
            for name in company.names:
                self.names.setdefault(_norm_name(name), company.id)

    def match(self, fields: Mapping[str, str], role: str) -> tuple[str, str] | None:
        """(company id, how) for the ``seller`` or ``buyer`` of an e-invoice."""
        vat = fields.get(f"{role}_vat_id")
        if vat and _norm_vat(vat) in self.vat:
            term = "BT-31" if role == "seller" else "BT-48"
            return self.vat[_norm_vat(vat)], f"{role} VAT id {vat} ({term})"
        name = fields.get(f"{role}_name")
        if name and _norm_name(name) in self.names:
            term = "BT-27" if role == "seller" else "BT-44"
            return self.names[_norm_name(name)], f"{role} name ({term})"
        return None


class ExtractionStage:
    """The extractors of each source, and how their findings merge."""

    def __init__(
        self,
        extractors: Mapping[str, type[Extractor]],
        sources: Sequence[SourceConfig],
        companies: Sequence[CompanyConfig],
    ) -> None:
        self._instances: dict[str, Extractor] = {}
        self._by_source: dict[str, list[Extractor]] = {}
        for source in sources:
            chosen: list[Extractor] = []
            for name in source.extract:
                cls = extractors.get(name)
                if cls is None:  # the loader reports it; a Runtime built by hand skips it
                    continue
                if name not in self._instances:
                    self._instances[name] = cls()
                chosen.append(self._instances[name])
            # Strongest first: a field a stronger extractor found is kept.
            chosen.sort(key=lambda e: -e.priority)
            self._by_source[source.id] = chosen
        self.companies = CompanyMatcher(companies)

    def extractors_for(self, source_id: str) -> list[Extractor]:
        return self._by_source.get(source_id, [])

    def findings(
        self, source_cfg: SourceConfig, item: SourceDocument, stated: DocumentMetadata
    ) -> list[Finding]:
        """Run each of the source's extractors that detects something, isolated."""
        extractors = self.extractors_for(source_cfg.id)
        if not extractors:
            return []
        media_type = item.media_type or mimetypes.guess_type(item.filename)[0]
        content = item.content
        if not isinstance(content, bytes | Path):
            try:
                content.fileno()
            except (AttributeError, OSError, ValueError):
                # An in-memory file object: extractors get its bytes.
                content.seek(0)
                content = content.read()
        timeout = source_cfg.extract_timeout.total_seconds()
        out: list[Finding] = []
        for extractor in extractors:
            name = extractor.name
            own, done_with = _own_handle(content)
            document = ExtractionInput(item.filename, media_type, own, stated)
            try:
                try:
                    detected = extractor.detect(document)
                except BaseException:
                    done_with()
                    raise
                if not detected:
                    done_with()
                    continue
                result = _run_isolated(
                    partial(extractor.extract, document), timeout, name, done_with
                )
            except ExtractionError as exc:
                out.append(Finding(name, error=str(exc)))
                continue
            except Exception as exc:  # a plugin's bug must not stop the import
                out.append(Finding(name, error=f"{type(exc).__name__}: {exc}"))
                continue
            if result is not None and not isinstance(result, Extraction):
                out.append(Finding(name, error=f"returned {type(result).__name__}, not Extraction"))
                continue
            out.append(Finding(name, extraction=result))
        return out

    def apply(
        self,
        source_cfg: SourceConfig,
        item: SourceDocument,
        findings: Sequence[Finding],
        stated: DocumentMetadata | None = None,
    ) -> tuple[SourceDocument, Derived]:
        """``item`` with the findings merged under the source's own fields.

        ``stated`` is what counts as the source's (default: ``item.metadata``);
        re-extraction passes the catalog's fields minus the extracted ones.
        """
        stated = item.metadata if stated is None else stated
        nothing_found = not any(f.extraction is not None for f in findings)
        if nothing_found and stated is item.metadata and not item.guessed:
            # Nothing found (the common case for a plain PDF): no merging cost.
            rule = next((r for r in source_cfg.assign_company if rule_matches(r, item)), None)
            if rule is None:
                return item, _NOTHING
            changed = item.metadata.company != rule.company
            merged = assign_company([rule], item)
            return merged, Derived({"company": RULE_PROVENANCE} if changed else {})
        explicit = stated_fields(stated) - item.guessed
        values: dict[str, Any] = {
            name: getattr(stated, name) for name in DocumentMetadata.model_fields
        }
        fields = dict(stated.fields)
        provenance: dict[str, str] = {}
        valid: bool | None = None
        errors: tuple[str, ...] = ()
        for finding in findings:
            extraction = finding.extraction
            if extraction is None:
                continue
            found = extraction.metadata
            for name in found.model_fields_set - {"fields"}:
                if name in explicit or name in provenance:
                    continue
                values[name] = getattr(found, name)
                provenance[name] = extraction.provenance.get(name, finding.extractor)
            for key, value in found.fields.items():
                where = f"fields.{key}"
                if key in fields:
                    continue
                fields[key] = value
                provenance[where] = extraction.provenance.get(where, finding.extractor)
            if valid is None and extraction.einvoice_valid is not None:
                valid, errors = extraction.einvoice_valid, tuple(extraction.einvoice_errors)
        values["fields"] = fields
        for name in item.guessed:
            if name not in provenance and name in stated_fields(stated):
                # Kept, and remembered as a guess: re-extraction may replace it.
                provenance[name] = GUESS_PROVENANCE
                explicit.add(name)
        self._direction(values, provenance, explicit)
        metadata = DocumentMetadata.model_validate(
            {k: v for k, v in values.items() if k in explicit or k in provenance or k == "fields"}
        )
        merged = replace(item, metadata=metadata)
        rule = next((r for r in source_cfg.assign_company if rule_matches(r, merged)), None)
        if rule is not None:
            merged = assign_company([rule], merged)
            provenance.pop("company", None)
            if "company" not in explicit or stated.company != rule.company:
                provenance["company"] = RULE_PROVENANCE
        return merged, Derived(provenance, valid, errors)

    def _direction(
        self, values: dict[str, Any], provenance: dict[str, str], explicit: set[str]
    ) -> None:
        """Incoming or sales invoice, and the company, from the profiles' VAT ids."""
        fields = values["fields"]
        parties = ("seller_vat_id", "seller_name", "buyer_vat_id", "buyer_name")
        if not any(f"fields.{p}" in provenance for p in parties):
            return  # no e-invoice parties read: nothing to decide
        seller = self.companies.match(fields, "seller")
        buyer = self.companies.match(fields, "buyer")
        company = values.get("company") if "company" in explicit else None
        if company is None:
            # Ours as the buyer: our incoming invoice; ours as the seller: our sale.
            chosen = buyer or seller
            if chosen is not None:
                values["company"] = chosen[0]
                provenance["company"] = f"company profile {chosen[0]}: {chosen[1]}"
                company = chosen[0]
        is_sale = (
            seller is not None
            and seller[0] == company
            and not (buyer is not None and buyer[0] == company)
        )
        if is_sale and values.get("type") is DocumentType.INCOMING_INVOICE and "type" in provenance:
            values["type"] = DocumentType.SALES_INVOICE
            assert seller is not None
            provenance["type"] = f"{provenance['type']}; {seller[1]} is {seller[0]}'s"


_DEFAULTS = {
    name: f.get_default(call_default_factory=True)
    for name, f in DocumentMetadata.model_fields.items()
}


def stated_fields(metadata: DocumentMetadata) -> set[str]:
    """The fields a source really states: set, and not to the "don't know" default.

    ``company=None``, ``type=misc`` or ``payment_status=unknown`` say nothing,
    even when a source passes them explicitly (the folder source passes its
    ``company`` option, None when unset), so extracted values may fill them.
    """
    return {
        name for name in metadata.model_fields_set if getattr(metadata, name) != _DEFAULTS.get(name)
    }


def log_findings(log: Any, doc_id: str, findings: Sequence[Finding]) -> None:
    """One ``document.extract_failed`` warning per extractor that failed."""
    for finding in findings:
        if finding.error is not None:
            # The document still imports, with the fields it had.
            log.warning(
                "document.extract_failed",
                document=doc_id,
                extractor=finding.extractor,
                reason=finding.error,
            )


def log_duplicate(log: Any, outcome: ImportOutcome) -> None:
    """The ``document.duplicate`` event when the catalog marked one."""
    if outcome.duplicate_of is not None:
        log.info(
            "document.duplicate",
            document=outcome.document_id,
            duplicate_of=outcome.duplicate_of,
            reason=outcome.duplicate_reason,
        )
