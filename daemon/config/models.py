"""The configuration file's structure, validated by pydantic (SPEC section 4).

Every model forbids unknown keys, so a typo is an error with its line number
rather than a silently ignored setting. Connector ``options`` are validated in
a second step by each connector's own model (see ``loader.py``).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from invoicesync.daemon.naming import DEFAULT_TEMPLATE, FilenameTemplate
from invoicesync.daemon.restrictions import RestrictionsConfig
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .durations import Duration

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
Identifier = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="Letters, digits, '.', '_' or '-', starting with a letter or digit.",
    ),
]


def system_timezone() -> str:
    """The machine's time zone name: $TZ, /etc/timezone, /etc/localtime, else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and _is_zone(tz):
        return tz
    try:
        name = Path("/etc/timezone").read_text().strip()
        if _is_zone(name):
            return name
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            name = target.split("zoneinfo/", 1)[1]
            if _is_zone(name):
                return name
    except OSError:
        pass
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _timezone(value: str) -> str:
    if not _is_zone(value):
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin")
    return value


def default_state_dir() -> Path:
    """$STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/invoicesync."""
    if os.environ.get("STATE_DIRECTORY"):
        # systemd may pass several colon-separated folders; the first is ours.
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "invoicesync"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogConfig(Model):
    format: LogFormat = Field(
        LogFormat.AUTO, description="auto = console on a TTY, JSON lines otherwise"
    )
    level: LogLevel = LogLevel.INFO


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d{1,2})-(\d{1,2})$")


class WindowConfig(Model):
    """When scheduled runs may start: days (``mon-fri``, ``sat``) and hours (``08-18``)."""

    days: list[str] = Field(default_factory=lambda: ["mon-sun"])
    hours: str = "00-24"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        for item in value:
            parts = item.lower().split("-")
            if len(parts) > 2 or any(p not in _DAYS for p in parts):
                raise ValueError(f"expected days like mon, mon-fri or sat-sun, got {item!r}")
        return [v.lower() for v in value]

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        match = _HOURS.match(value.strip())
        if not match or not (0 <= int(match[1]) < int(match[2]) <= 24):
            raise ValueError(
                f"expected an hour range like 08-18 (start < end <= 24), got {value!r}"
            )
        return value.strip()

    def day_numbers(self) -> set[int]:
        """Allowed weekdays, Monday = 0."""
        result: set[int] = set()
        for item in self.days:
            parts = item.split("-")
            start, end = _DAYS.index(parts[0]), _DAYS.index(parts[-1])
            if start <= end:
                result.update(range(start, end + 1))
            else:  # a range over the weekend, such as fri-mon
                result.update(range(start, 7))
                result.update(range(0, end + 1))
        return result

    def hour_range(self) -> tuple[int, int]:
        start, end = self.hours.split("-")
        return int(start), int(end)


class ScheduleConfig(Model):
    """When a source imports or an account exports: exactly one of the forms."""

    every: Duration | None = Field(None, description="Run at this interval, e.g. 15m.")
    cron: str | None = Field(None, description='A crontab expression, e.g. "0 6 * * 1-5".')
    after_import: bool = Field(False, description="Exports only: run after each import.")
    window: WindowConfig | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ScheduleConfig:
        forms = [n for n in ("every", "cron") if getattr(self, n) is not None]
        if self.after_import:
            forms.append("after_import")
        if len(forms) != 1:
            raise ValueError(
                "give exactly one of every, cron or after_import"
                + (f" (got {', '.join(forms)})" if forms else "")
            )
        if self.every is not None and self.every < timedelta(seconds=1):
            raise ValueError("every: must be at least 1s")
        if self.cron is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.cron)
            except ValueError as exc:
                raise ValueError(f"cron: {exc}") from None
        return self


class CompanyConfig(Model):
    """A company profile (usually a supplier)."""

    id: Identifier
    name: str | None = None
    vat_ids: list[Annotated[str, Field(min_length=2, max_length=40)]] = Field(
        default_factory=list,
        description="VAT ids of this company (e.g. DE123456789): an e-invoice whose buyer "
        "has one is its incoming invoice, whose seller has one is its sales invoice.",
    )
    names: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        description="Legal names matched like vat_ids when an e-invoice gives no VAT id "
        "(case and spacing ignored).",
    )


class CompanyRule(Model):
    """Assign a company to documents that match; the first matching rule wins.

    Give one or more conditions; all given must hold.
    """

    company: Identifier
    sender: str | None = Field(
        None, description="Sender address or domain glob, e.g. '*@telekom.de' or 'telekom.de'."
    )
    filename: str | None = Field(
        None, description="Glob on the original file name, e.g. 'RE-*.pdf'."
    )
    field: dict[str, str] | None = Field(
        None, description="Custom field values that must match exactly, e.g. {supplier: T-01}."
    )

    @model_validator(mode="after")
    def _some_condition(self) -> CompanyRule:
        if self.sender is None and self.filename is None and not self.field:
            raise ValueError("a company rule needs at least one of sender, filename or field")
        return self


STALE_AFTER_HELP = (
    "Log source.stale/account.stale and flag it on the status page and in /metrics when "
    "no run succeeded for this long. Default: three times the schedule's longest gap "
    "between runs; none for after_import accounts and unscheduled entries."
)


class SourceConfig(Model):
    """An import account."""

    id: Identifier
    type: str = Field(description="Connector type, built in or from a plugin.")
    schedule: ScheduleConfig | None = None
    stale_after: Duration | None = Field(None, description=STALE_AFTER_HELP)
    options: dict[str, Any] = Field(default_factory=dict)
    assign_company: list[CompanyRule] = Field(
        default_factory=list, description="Rules mapping documents to company ids."
    )
    extract: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=lambda: ["einvoice"],
        description="Extractors reading fields from the content at import "
        "(default: the built-in e-invoice extractor; [] turns extraction off).",
    )
    extract_timeout: Duration = Field(
        timedelta(seconds=30),
        description="An extractor taking longer on one document is abandoned (a warning).",
    )

    @field_validator("schedule")
    @classmethod
    def _no_after_import(cls, value: ScheduleConfig | None) -> ScheduleConfig | None:
        if value is not None and value.after_import:
            raise ValueError("after_import is for export accounts; sources use every or cron")
        return value


class OnUpdate(StrEnum):
    EXPORT = "export"
    IGNORE = "ignore"


class Duplicates(StrEnum):
    SKIP = "skip"
    EXPORT = "export"


class RetryConfig(Model):
    """Exponential back-off with jitter for transient failures."""

    attempts: int = Field(4, ge=1, le=100)
    initial: Duration = timedelta(seconds=2)
    max: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _order(self) -> RetryConfig:
        if self.initial > self.max:
            raise ValueError("initial must not be longer than max")
        return self


def _template(value: str) -> str:
    FilenameTemplate.parse(value)  # raises ValueError with a precise message
    return value


class ExportConfig(Model):
    """An export sync account."""

    id: Identifier
    type: str = Field(description="Connector type, built in or from a plugin.")
    schedule: ScheduleConfig | None = None
    stale_after: Duration | None = Field(None, description=STALE_AFTER_HELP)
    filename: Annotated[str, AfterValidator(_template)] = DEFAULT_TEMPLATE
    options: dict[str, Any] = Field(default_factory=dict)
    restrictions: RestrictionsConfig | None = None
    on_update: OnUpdate = OnUpdate.EXPORT
    retry: RetryConfig = Field(default_factory=RetryConfig)
    concurrency: int | None = Field(
        None,
        ge=1,
        le=32,
        description="Documents exported in parallel (1-32); unset: the target type's default "
        "(1 for folder and email, 8 for webdav and rclone, 4 for sftp, 16 for s3).",
    )
    duplicates: Duplicates = Field(
        Duplicates.SKIP,
        description="Documents marked duplicate_of another (the same invoice from another "
        "source) are skipped, or exported too.",
    )
    portable_names: bool = Field(
        False,
        description="Names valid on every common file system: names differing only in case "
        "are one name (Café, café, CAFÉ get distinct names), no Windows-reserved names "
        "(CON, con.txt, COM1), no trailing dots or spaces, none of <>:\"|?*. For targets "
        "that are case-insensitive (Windows shares, macOS, many Nextcloud back-ends).",
    )

    def workers(self, target_default: object = 1) -> int:
        """Threads for one export run: ``concurrency`` when set, else the target's default.

        ``target_default`` is the target class's ``default_concurrency`` (plugin
        API 1.3); a plugin's odd value (not an int, out of range) is clamped to
        1..32 rather than trusted.
        """
        if self.concurrency is not None:
            return self.concurrency
        if not isinstance(target_default, int) or isinstance(target_default, bool):
            return 1
        return max(1, min(32, target_default))


WEB_MODULES = ("starlette", "jinja2", "uvicorn", "prometheus_client")


def missing_web_modules() -> list[str]:
    """The modules of the ``web`` extra that are not installed (found without importing)."""
    return [m for m in WEB_MODULES if importlib.util.find_spec(m) is None]


def _secret_ref(value: str) -> str:
    if not value.startswith(("keyring:", "env:", "credential:")):
        raise ValueError(
            "give a secret reference (keyring:NAME, env:VAR or credential:NAME), "
            "never the secret itself"
        )
    return value


SecretRef = Annotated[
    str,
    AfterValidator(_secret_ref),
    Field(description="keyring:NAME, env:VAR or credential:NAME"),
]


class BasicAuthConfig(Model):
    username: str = Field(min_length=1, pattern=r"^[^:]+$")
    password: SecretRef


class HttpAuthConfig(Model):
    """Who may see the status page and /metrics: exactly one of bearer or basic."""

    bearer: SecretRef | None = Field(
        None, description="A token clients send as 'Authorization: Bearer TOKEN'."
    )
    basic: BasicAuthConfig | None = None

    @model_validator(mode="after")
    def _one(self) -> HttpAuthConfig:
        if (self.bearer is None) == (self.basic is None):
            raise ValueError("give exactly one of bearer or basic")
        return self


def parse_listen(value: str) -> tuple[str, int]:
    """``127.0.0.1:8080`` / ``[::1]:8080`` / ``localhost:8080`` -> (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpConfig(Model):
    """The daemon's HTTP endpoint: status page, /metrics, /healthz (the ``web`` extra)."""

    listen: str = Field(
        "127.0.0.1:8080",
        description="HOST:PORT. A non-loopback address needs auth.",
    )
    auth: HttpAuthConfig | None = None
    runs_shown: int = Field(50, ge=1, le=1000, description="Runs listed on the runs page.")

    @model_validator(mode="after")
    def _check(self) -> HttpConfig:
        missing = missing_web_modules()
        if missing:
            raise ValueError(
                f"the HTTP endpoint needs the 'web' extra ({', '.join(missing)} not installed): "
                "pip install 'invoicesync[web]'"
            )
        host, _port = parse_listen(self.listen)
        if self.auth is None and not is_loopback(host):
            raise ValueError(
                f"listen: {host} is not a loopback address; without auth (bearer or basic) "
                "the endpoint listens on 127.0.0.1, ::1 or localhost only"
            )
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


class DaemonConfig(Model):
    """Settings of ``invoicesync run``."""

    grace_period: Duration = Field(
        timedelta(seconds=30), description="How long SIGTERM waits for work in hand."
    )
    workers: int = Field(4, ge=1, le=64, description="Threads running jobs.")
    jitter: Duration = Field(
        timedelta(seconds=5), description="Random delay spreading jobs that share a schedule."
    )
    http: HttpConfig | None = Field(
        None, description="Serve the status page, /metrics and /healthz (off by default)."
    )
    heartbeat: Duration = Field(
        timedelta(seconds=10),
        description="executor: procrastinate: how often a worker tells the queue it is alive.",
    )
    stalled_after: Duration = Field(
        timedelta(seconds=30),
        description="executor: procrastinate: a worker silent this long is dead; "
        "its jobs are queued again for the other nodes.",
    )


class Executor(StrEnum):
    """Who runs the daemon's jobs."""

    LOCAL = "local"
    PROCRASTINATE = "procrastinate"


class Config(Model):
    """The whole configuration file."""

    version: Literal[1] = 1
    timezone: Annotated[str, AfterValidator(_timezone)] = Field(default_factory=system_timezone)
    state: Path = Field(default_factory=default_state_dir)
    database: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite inside the state folder."
    )
    blobs: str | None = Field(
        None,
        description="Where document content is kept: a folder (may be a shared mount) or "
        "s3://bucket/prefix; default: the blobs folder inside `state`.",
    )
    executor: Executor = Field(
        Executor.LOCAL,
        description="local: `invoicesync run` runs its jobs itself; procrastinate: jobs go "
        "through a queue in the PostgreSQL `database` that any node's `invoicesync worker` "
        "(or `run`) works off (docs/scaling.md).",
    )
    log: LogConfig = Field(default_factory=LogConfig)
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    companies: list[CompanyConfig] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=list)
    exports: list[ExportConfig] = Field(default_factory=list)

    @field_validator("database", "blobs")
    @classmethod
    def _no_nul(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A path or URL the operating system cannot open: say so here, with
        # file:line, rather than crash in the first command that opens it.
        if value is not None and "\0" in value:
            what = "a database URL" if info.field_name == "database" else "a path or URL"
            raise ValueError(f"{what} cannot contain a NUL character")
        return value

    @field_validator("state")
    @classmethod
    def _state_relative(cls, value: Path, info: ValidationInfo) -> Path:
        if "\0" in str(value):
            # The operating system cannot name such a file: every command
            # that opens the state would fail with "embedded null byte".
            raise ValueError("a path cannot contain a NUL character")
        base = (info.context or {}).get("base_dir")
        value = value.expanduser()
        if base is not None and not value.is_absolute():
            value = Path(base) / value
        return value

    @field_validator("blobs")
    @classmethod
    def _blobs_relative(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or "://" in value:
            return value
        if "\0" in value or not value.strip():
            raise ValueError("expected a folder or a URL such as s3://bucket/prefix")
        path = Path(value).expanduser()
        base = (info.context or {}).get("base_dir")
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return str(path)

    @model_validator(mode="after")
    def _executor_needs_postgres(self) -> Config:
        if self.executor is Executor.PROCRASTINATE and not (
            self.database or ""
        ).startswith("postgresql"):
            raise ValueError(
                "executor: procrastinate keeps its jobs in PostgreSQL: set `database:` to a "
                "postgresql+psycopg://... URL (docs/scaling.md)"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _unique_ids(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for section in ("companies", "sources", "exports"):
            seen: set[Any] = set()
            for item in data.get(section) or []:
                ident = item.get("id") if isinstance(item, dict) else None
                if ident is not None and ident in seen:
                    raise ValueError(f"{section}: id {ident!r} is used twice")
                seen.add(ident)
        return data

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def source(self, source_id: str) -> SourceConfig:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise KeyError(f"no source {source_id!r}; configured: {_ids(self.sources)}")

    def export(self, account_id: str) -> ExportConfig:
        for account in self.exports:
            if account.id == account_id:
                return account
        raise KeyError(f"no export account {account_id!r}; configured: {_ids(self.exports)}")


def _ids(items: list[SourceConfig] | list[ExportConfig]) -> str:
    return ", ".join(i.id for i in items) or "none"
