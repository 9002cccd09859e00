"""Finding, parsing and validating the configuration file.

YAML is read with ruamel.yaml so that every value keeps its line number; a
pydantic error's ``loc`` is walked back through the parsed tree to the line of
the offending value. Errors read like::

    invoicesync.yaml:14: exports[0].restrictions.period.last: expected N followed by d, w, m or y
"""

from __future__ import annotations

import difflib
import os
import types as pytypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from invoicesync.daemon.extras import install_hint
from invoicesync.daemon.plugin_host import PluginRegistry
from invoicesync.plugins.errors import ConfigurationError
from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .models import Config
from .overlaps import overlapping_folders

DEFAULT_LOCATIONS = (Path("invoicesync.yaml"), Path("/etc/invoicesync/invoicesync.yaml"))
Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, with where it is."""

    file: Path
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


class ConfigError(ConfigurationError):
    """The configuration is invalid; ``problems`` says where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration, its connector options models, and where it came from."""

    config: Config
    path: Path
    source_options: dict[str, BaseModel]
    export_options: dict[str, BaseModel]
    secrets: frozenset[str]
    """Every text to mask: the secret values and their encoded forms."""
    warnings: tuple[str, ...] = ()
    """Not errors, but worth saying at ``check-config`` (e.g. a secret too short to mask)."""
    #: ``daemon.http.auth`` with its secret references resolved (None: no auth).
    http_auth: dict[str, Any] | None = None


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config``, then $INVOICESYNC_CONFIG, then ./invoicesync.yaml, then /etc."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("INVOICESYNC_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_LOCATIONS:
        if candidate.exists():
            return candidate
    raise ConfigurationError(
        "no configuration file: pass --config PATH, set INVOICESYNC_CONFIG, or create "
        "./invoicesync.yaml or /etc/invoicesync/invoicesync.yaml "
        "(start from config.example.yaml)"
    )


def format_loc(loc: Iterable[str | int]) -> str:
    """``("exports", 0, "filename")`` -> ``exports[0].filename``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(tree: Any, loc: Loc) -> int | None:
    """The 1-based line of the deepest node along ``loc`` that exists in ``tree``."""
    node = tree
    line: int | None = getattr(getattr(tree, "lc", None), "line", None)
    line = None if line is None else line + 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            key_line, _col = node.lc.key(part)
            line = key_line + 1
            try:
                value_line = node.lc.value(part)[0]
            except (KeyError, TypeError):
                value_line = key_line
            # Scalars: the value's own line (it may follow the key on the next line).
            if not isinstance(node[part], CommentedMap | CommentedSeq):
                line = value_line + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def _clean_loc(loc: Sequence[str | int]) -> Loc:
    # pydantic inserts validator names into loc for unions and tagged types
    # ("function-after[...]", "list[str]"); they mean nothing to a user.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and "(" not in p))


def _models_in(tp: Any) -> list[Any]:
    """The types a field annotation may hold: ``X | None``, ``Annotated[X, ...]`` -> [X]."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _models_in(get_args(tp)[0])
    if origin is Union or origin is pytypes.UnionType:
        return [m for arg in get_args(tp) for m in _models_in(arg)]
    return [tp]


def keys_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the mapping at ``loc`` (below ``model``) may have; [] when unknown."""
    current: list[Any] = [model]
    for part in loc:
        following: list[Any] = []
        for tp in current:
            if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
                field = tp.model_fields.get(part)
                if field is not None:
                    following += _models_in(field.annotation)
            elif isinstance(part, int) and get_origin(tp) in (list, tuple):
                following += [m for arg in get_args(tp) for m in _models_in(arg)]
        current = following
    return sorted(
        {
            field.alias or name
            for tp in current
            if isinstance(tp, type) and issubclass(tp, BaseModel)
            for name, field in tp.model_fields.items()
        }
    )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'acme'?)`` for a close match, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _message(error: Any, model: type[BaseModel] | None, loc: Loc) -> str:
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        keys = keys_at(model, loc[:-1]) if model is not None and loc else []
        hint = did_you_mean(str(loc[-1]), keys) if loc else ""
        if hint:
            msg = f"unknown key{hint}"
        elif keys:
            msg = f"unknown key; allowed here: {', '.join(keys)}"
        else:
            msg = "unknown key (check the spelling; see `invoicesync config-schema`)"
    elif error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        # pydantic names its own classes ("instance of TagsConfig"); users wrote YAML.
        msg = f"expected a mapping (key: value pairs), got {_yaml_kind(error.get('input'))}"
    return msg


def _yaml_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    if value is None:
        return "nothing (an empty value)"
    return f"{value!r}"


def problems_from(
    exc: ValidationError,
    file: Path,
    tree: Any,
    prefix: Loc = (),
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """One Problem per pydantic error; ``model`` (validated at ``prefix``) names allowed keys."""
    result = []
    for error in exc.errors():
        own = _clean_loc(error["loc"])
        loc = prefix + own
        result.append(
            Problem(file, line_of(tree, loc), format_loc(loc), _message(error, model, own))
        )
    return result


class _BadValue(ConstructorError):
    """A well-formed YAML scalar whose value is impossible (reported without "invalid YAML")."""


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, with impossible scalar values as YAML errors.

    ``2025-13-01`` matches YAML's timestamp pattern and ``._`` its float pattern,
    so ruamel builds a ``date`` or ``float`` from them and Python's ``ValueError``
    escapes without a line number (the loader's fuzz test found the float case).
    """

    def _scalar(self, construct: Any, what: str, node: Any, *args: Any) -> Any:
        try:
            return construct(node, *args)
        # ruamel's int constructor indexes into "0b_" and raises IndexError.
        except (ValueError, OverflowError, IndexError) as exc:
            why = "" if isinstance(exc, IndexError) else f" ({exc})"
            raise _BadValue(
                None, None, f"{node.value} is not a valid {what}{why}", node.start_mark
            ) from None

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        return self._scalar(super().construct_yaml_timestamp, "date", node, values)

    def construct_yaml_float(self, node: Any) -> Any:
        return self._scalar(super().construct_yaml_float, "number", node)

    def construct_yaml_int(self, node: Any) -> Any:
        return self._scalar(super().construct_yaml_int, "whole number", node)


for _tag, _construct in (
    ("timestamp", _Constructor.construct_yaml_timestamp),
    ("float", _Constructor.construct_yaml_float),
    ("int", _Constructor.construct_yaml_int),
):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _construct)


_INDENT_SYMPTOMS = (
    "expected <block end>",
    "mapping values are not allowed here",
    "could not find expected ':'",
    "found character '\\t'",
    "did not find expected key",
)


def _indent_hint(message: str) -> str:
    """The parser's words for a misaligned line say nothing about indentation; add it."""
    if not any(symptom in message for symptom in _INDENT_SYMPTOMS):
        return ""
    if "\\t" in message:
        return " (hint: indent with spaces; YAML does not allow tabs)"
    return (
        " (hint: check the indentation of this line and the one above; the keys of one "
        "mapping must start in the same column, indented with spaces; quote a value "
        'that contains ": ")'
    )


MAX_FILE_BYTES = 1024 * 1024
"""A configuration is a few kilobytes; anything above this is refused unread."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (the schema needs about 8)."""
MAX_VALUES = 100_000
"""Most values (scalars, mappings, lists) the document may hold once aliases are
expanded: a "billion laughs" file of a few hundred bytes expands to 9**9 values."""


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([Problem(path, None, "", "file not found")]) from None
    except OSError as exc:
        raise ConfigError([Problem(path, None, "", f"cannot read: {exc.strerror}")]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError([Problem(
            path, None, "",
            f"the file is {max(size, len(data))} bytes; at most {MAX_FILE_BYTES} bytes are "
            "accepted (a configuration is a few kilobytes: is this the right file?)",
        )])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, None, "", f"cannot read: not UTF-8 ({exc})")]) from None


def check_yaml_limits(path: Path, text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH and aliases expanding past MAX_VALUES.

    Runs over ruamel's event stream, whose parser keeps its own stack (the
    composer and our tree walks recurse, so a 5,000-deep document must never
    reach them), and counts every value as it would be after alias expansion,
    without expanding anything: memory stays proportional to the file.
    """
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        ScalarEvent,
    )

    def refuse(event: Any, message: str) -> ConfigError:
        return ConfigError([Problem(path, event.start_mark.line + 1, "", message)])

    # One frame per open mapping or list: its anchor (or None) and its size so far.
    frames: list[tuple[str | None, int]] = []
    sizes: dict[str, int] = {}  # anchor -> values in the anchored node, expanded
    total = 0
    for event in YAML(typ="rt").parse(text):
        if isinstance(event, ScalarEvent | AliasEvent):
            if isinstance(event, AliasEvent):
                size = sizes.get(event.anchor)
                if size is None:
                    if any(anchor == event.anchor for anchor, _n in frames):
                        raise refuse(
                            event, f"alias *{event.anchor} refers to a node that contains it"
                        )
                    raise refuse(event, f"alias *{event.anchor} has no anchor &{event.anchor}")
            else:
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
            total += size
            if frames:
                anchor, n = frames[-1]
                frames[-1] = (anchor, n + size)
        elif isinstance(event, CollectionStartEvent):
            total += 1
            frames.append((event.anchor, 1))
            if len(frames) > MAX_DEPTH:
                raise refuse(event, f"mappings and lists nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            anchor, n = frames.pop()
            if anchor:
                sizes[anchor] = n
            if frames:
                parent, m = frames[-1]
                frames[-1] = (parent, m + n)
        if total > MAX_VALUES:
            raise refuse(
                event,
                f"aliases expand to more than {MAX_VALUES} values (an alias bomb?); "
                "write the values out or use fewer aliases",
            )


def read_yaml(path: Path) -> Any:
    """Parse YAML keeping line numbers; a syntax error becomes a ConfigError.

    The file's size, nesting depth and alias expansion are bounded first (see
    :func:`check_yaml_limits`), so hostile input costs neither memory nor a
    RecursionError.
    """
    text = _read_text(path)
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    try:
        check_yaml_limits(path, text)
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        if not isinstance(exc, _BadValue):
            what = f"invalid YAML: {what}{_indent_hint(what)}"
        raise ConfigError([Problem(path, line, "", what)]) from None
    except YAMLError as exc:
        raise ConfigError([Problem(path, None, "", f"invalid YAML: {exc}")]) from None


def to_plain(node: Any) -> Any:
    """ruamel's commented containers -> plain dicts and lists (for pydantic)."""
    if isinstance(node, dict):
        return {
            str(k) if not isinstance(k, int | bool) else k: to_plain(v) for k, v in node.items()
        }
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node


def _ids(data: dict[str, Any], section: str) -> set[str]:
    items = data.get(section)
    if not isinstance(items, list):
        return set()
    return {i["id"] for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)}


def _duplicate_ids(tree: Any, path: Path) -> list[Problem]:
    """Ids used twice, reported at the second use (the model alone only knows the section)."""
    problems = []
    for section in ("companies", "sources", "exports"):
        items = tree.get(section)
        if not isinstance(items, list):
            continue
        first: dict[Any, int] = {}
        for index, item in enumerate(items):
            ident = item.get("id") if isinstance(item, dict) else None
            if ident is None or not isinstance(ident, str | int):
                continue
            loc: Loc = (section, index, "id")
            if ident in first:
                problems.append(
                    Problem(
                        path,
                        line_of(tree, loc),
                        format_loc(loc),
                        f"id {ident!r} is used twice (first at line {first[ident]})",
                    )
                )
            else:
                first[ident] = line_of(tree, loc) or 0
    return problems


def _unknown_companies(
    config: Config, source_options: dict[str, BaseModel], path: Path, tree: Any
) -> list[Problem]:
    """A source's ``company`` option or ``assign_company`` rule naming no declared profile.

    Such a typo would otherwise pass and file every document under a company no
    restriction or template expects.
    """
    declared = [c.id for c in config.companies]
    problems = []
    for index, source in enumerate(config.sources):
        named: list[tuple[Loc, str]] = []
        company = getattr(source_options.get(source.id), "company", None)
        if isinstance(company, str):
            named.append((("sources", index, "options", "company"), company))
        for r, rule in enumerate(source.assign_company):
            named.append((("sources", index, "assign_company", r, "company"), rule.company))
        for loc, ident in named:
            if ident in declared:
                continue
            listing = ", ".join(declared) if declared else "none are declared under `companies:`"
            problems.append(
                Problem(
                    path,
                    line_of(tree, loc),
                    format_loc(loc),
                    f"unknown company id {ident!r}{did_you_mean(ident, declared)}; "
                    f"declared: {listing}",
                )
            )
    return problems


def load_config(path: Path, registry: PluginRegistry) -> LoadedConfig:
    """Read, validate and resolve ``path``; raise ConfigError listing every problem."""
    from .secrets import (
        MIN_REDACTABLE,
        SecretError,
        credential_forms,
        resolve_secret_refs,
        secret_paths,
    )

    base_dir = path.resolve().parent
    tree = read_yaml(path)
    if tree is None:
        tree = CommentedMap()
    if not isinstance(tree, dict):
        raise ConfigError([Problem(path, 1, "", "expected a mapping at the top level")])
    duplicates = _duplicate_ids(tree, path)
    if duplicates:
        raise ConfigError(duplicates)
    raw = to_plain(tree)
    context = {
        "base_dir": base_dir,
        "known_sources": _ids(raw, "sources"),
        "known_companies": _ids(raw, "companies"),
        "checks": registry.checks,
    }
    try:
        config = Config.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, path, tree, model=Config)) from None

    problems: list[Problem] = []
    warnings: list[str] = []
    secrets: set[str] = set()
    source_options: dict[str, BaseModel] = {}
    export_options: dict[str, BaseModel] = {}
    plans: list[
        tuple[str, int, str, dict[str, Any], dict[str, type[Any]], dict[str, BaseModel]]
    ] = [
        (
            "sources",
            i,
            s.id,
            {"type": s.type, "options": s.options},
            registry.sources,
            source_options,
        )
        for i, s in enumerate(config.sources)
    ] + [
        (
            "exports",
            i,
            e.id,
            {"type": e.type, "options": e.options},
            registry.targets,
            export_options,
        )
        for i, e in enumerate(config.exports)
    ]
    for section, index, ident, entry, types, out in plans:
        kind = "source" if section == "sources" else "target"
        connector = types.get(entry["type"])
        if connector is None:
            loc: Loc = (section, index, "type")
            known = ", ".join(sorted(types)) or "none"
            problems.append(
                Problem(
                    path,
                    line_of(tree, loc),
                    format_loc(loc),
                    f"unknown {kind} type {entry['type']!r}; installed: {known} "
                    "(see `invoicesync plugins`)",
                )
            )
            continue
        missing = install_hint(connector, kind)
        if missing is not None:
            loc = (section, index, "type")
            problems.append(Problem(path, line_of(tree, loc), format_loc(loc), missing))
            continue
        try:
            options, found = resolve_secret_refs(entry["options"])
        except SecretError as exc:
            loc = (section, index, "options", *exc.path)
            problems.append(Problem(path, line_of(tree, loc), format_loc(loc), exc.message))
            continue
        secrets |= found
        user = next(
            (options[k] for k in ("username", "user", "login") if isinstance(options.get(k), str)),
            None,
        )
        for secret in found:
            if user:
                secrets |= credential_forms(user, secret)
        for ref_path in secret_paths(entry["options"]):
            value: Any = options
            for key in ref_path:
                value = value[key]
            if isinstance(value, str) and len(value) < MIN_REDACTABLE:
                loc = (section, index, "options", *ref_path)
                warnings.append(
                    str(
                        Problem(
                            path,
                            line_of(tree, loc),
                            format_loc(loc),
                            f"this secret is shorter than {MIN_REDACTABLE} characters: "
                            "invoicesync cannot mask it in logs and output without "
                            "corrupting other text, so it is not masked; use a longer one",
                        )
                    )
                )
        try:
            out[ident] = connector.Options.model_validate(options, context={"base_dir": base_dir})
        except ValidationError as exc:
            problems += problems_from(
                exc, path, tree, (section, index, "options"), model=connector.Options
            )
    problems += _unknown_companies(config, source_options, path, tree)
    http_auth = None
    http = config.daemon.http
    if http is not None and http.auth is not None:
        try:
            http_auth, found = resolve_secret_refs(http.auth.model_dump(exclude_none=True))
            secrets |= found
        except SecretError as exc:
            loc = ("daemon", "http", "auth", *exc.path)
            problems.append(Problem(path, line_of(tree, loc), format_loc(loc), exc.message))
    for index, source in enumerate(config.sources):
        for position, name in enumerate(source.extract):
            if name not in registry.extractors:
                loc = ("sources", index, "extract", position)
                known = ", ".join(sorted(registry.extractors)) or "none"
                problems.append(
                    Problem(
                        path,
                        line_of(tree, loc),
                        format_loc(loc),
                        f"unknown extractor {name!r}; installed: {known} "
                        "(see `invoicesync plugins`)",
                    )
                )
    def describe(loc: Loc) -> str:
        if loc and loc[0] in ("state", "blobs") and loc[0] not in tree:
            return "the default"
        line = line_of(tree, loc)
        return f"{format_loc(loc)}, line {line}" if line else format_loc(loc)

    for loc, message in overlapping_folders(config, source_options, export_options, describe):
        problems.append(Problem(path, line_of(tree, loc), format_loc(loc), message))
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(
        config,
        path,
        source_options,
        export_options,
        frozenset(secrets),
        tuple(warnings),
        http_auth,
    )
