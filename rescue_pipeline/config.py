"""sites.yaml → typed, validated configuration: the one place that reads configuration.

The file is checked against the JSON Schema shipped beside this module (unknown keys are
errors), then by the rules a schema cannot say (duplicate site ids, secrets written inline).
Every error names the file, the site and the key, so a data engineer can fix it in one go.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from rescue_pipeline import safe_yaml

CONFIG_ENV = "RESCUE_CONFIG"
DEFAULT_WAREHOUSE = "warehouse/rescue.duckdb"
SOURCE_KINDS = ("ndjson", "fhir", "bulk")
DEFAULT_SCHEDULE = "0 2 * * *"  # 02:00 every night, in the site's time zone
_DAILY_AT = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")  # used with fullmatch
# Keys that would hold a secret itself; the file must name an environment variable instead.
_INLINE_SECRET_KEYS = {
    "token": "token_env",
    "access_token": "token_env",
    "bearer_token": "token_env",
    "client_secret": "client_secret_env",
    "private_key": "key_file_env",
    "key": "key_file_env",
    "key_file": "key_file_env",
    "password": "an environment variable (…_env)",
    "secret": "an environment variable (…_env)",
}


class ConfigError(ValueError):
    """A configuration problem, worded for the person who edits sites.yaml."""


@dataclass(frozen=True)
class ConceptMapping:
    """One site-local code and the standard code it stands for."""

    system: str
    code: str
    target_system: str
    target_code: str
    display: str | None = None


@dataclass(frozen=True)
class AuthConfig:
    kind: Literal["none", "bearer", "smart-backend"] = "none"
    token_env: str | None = None
    client_id: str | None = None
    token_url: str | None = None
    scope: str | None = None
    key_file_env: str | None = None
    key_id: str | None = None
    client_secret_env: str | None = None


@dataclass(frozen=True)
class NdjsonSource:
    path: Path
    kind: Literal["ndjson"] = "ndjson"


@dataclass(frozen=True)
class FhirSource:
    base_url: str
    auth: AuthConfig = AuthConfig()
    timeout_seconds: float = 60.0
    max_attempts: int = 5
    types: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    page_size: int = 200
    overlap_seconds: int = 300
    search: dict[str, dict[str, str]] = field(default_factory=dict)
    # Type-level history (deletions), per type and load: where reading stops, with a warning.
    history_max_pages: int = 200
    history_max_bytes: int = 256 * 2**20
    history_max_seconds: float = 900.0
    # Searches, per resource type and load: past a bound the site's load fails (marks stay).
    search_max_pages: int = 5000
    search_max_seconds: float = 3600.0
    max_response_bytes: int = 64 * 2**20  # one page
    max_request_seconds: float = 600.0  # one request's body, however slowly it trickles
    load_max_seconds: float = 4 * 3600.0  # the site's whole load: every search and history
    allow_insecure_http: bool = False  # a token over plain http: test servers on loopback only
    keep_extract_days: int = 0  # keep a landed load's fetched files (PHI) this many days
    kind: Literal["fhir"] = "fhir"


@dataclass(frozen=True)
class BulkSource:
    base_url: str
    auth: AuthConfig = AuthConfig()
    timeout_seconds: float = 60.0
    max_attempts: int = 5
    types: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    level: Literal["system", "group", "patient"] = "system"
    group_id: str | None = None
    max_wait_seconds: int = 3600  # cap on one wait between status polls (Retry-After)
    poll_seconds: float = 10.0  # first wait when the server sends no Retry-After (then doubles)
    run_wait_minutes: float = 60.0  # one run polls this long, then leaves the job for the next
    deadline_hours: float = 72.0  # from kick-off; past it the export is abandoned
    search: dict[str, dict[str, str]] = field(default_factory=dict)  # sent as _typeFilter
    delete_when_done: bool = True  # DELETE the status URL once landed: the server may free files
    max_response_bytes: int = 64 * 2**20  # a status answer or manifest (files stream to disk)
    max_request_seconds: float = 600.0
    max_file_bytes: int = 32 * 2**30  # one output file
    max_file_seconds: float = 4 * 3600.0  # one output file's download
    allow_insecure_http: bool = False  # a token over plain http: test servers on loopback only
    keep_extract_days: int = 0  # keep a landed load's fetched files (PHI) this many days
    kind: Literal["bulk"] = "bulk"


Source = NdjsonSource | FhirSource | BulkSource


@dataclass(frozen=True)
class SiteConfig:
    id: str
    source: Source
    name: str | None = None
    timezone: str = "UTC"
    concept_map: tuple[ConceptMapping, ...] = ()
    schedule: str = DEFAULT_SCHEDULE  # cron, in `timezone`; sites.yaml may say "HH:MM"
    watch: Path | None = None

    @property
    def watched_folder(self) -> Path | None:
        """Where new NDJSON drops of this site appear: `watch:`, else an NDJSON site's own
        folder; None for a live site without `watch:` (nothing to watch)."""
        if self.watch is not None:
            return self.watch
        return self.source.path if isinstance(self.source, NdjsonSource) else None


@dataclass(frozen=True)
class OrchestrationConfig:
    """How Dagster runs the pipeline: retries, staleness, sensors, default status."""

    stale_after_hours: float = 36.0
    retries: int = 3
    retry_delay_seconds: float = 30.0
    sensor_interval_seconds: int = 60
    automation: Literal["running", "stopped"] = "stopped"


@dataclass(frozen=True)
class DuckDBConfig:
    """DuckDB's share of the machine while the pipeline writes the warehouse: past memory_limit
    (a size, or a share of the memory this process may use), large operations spill to
    temp_directory instead of growing."""

    memory_limit: str = "5%"
    threads: int | None = None  # None: DuckDB's own default, the processors available
    temp_directory: Path | None = None  # None: <working database>.tmp beside it


@dataclass(frozen=True)
class AnalysisConfig:
    """Rule settings; recorded with every derivation run."""

    data_cutoff: dt.date | None = None
    assessment_interval_days: int = 84
    assessment_window_days: int = 14
    pfi_sensitive_days: int = 183
    month_days: float = 30.4375
    ca125_uln_u_per_ml: float = 35.0
    pfs_window_days: int = 730
    pfs_gcig_progression: bool = False
    pfs_censor_new_therapy: bool = True
    regimen_gap_days: int = 90


@dataclass(frozen=True)
class Config:
    path: Path
    study_id: str
    warehouse: Path
    analysis: AnalysisConfig
    sites: tuple[SiteConfig, ...]
    report: Path | None = None
    orchestration: OrchestrationConfig = OrchestrationConfig()
    duckdb: DuckDBConfig = DuckDBConfig()
    nct_id: str = "NCT07295132"  # sites.yaml `nct_id` (the schema's default, checked by a test)

    @property
    def report_dir(self) -> Path:
        """Where each run writes the sponsors' report (default: `report/` beside the warehouse)."""
        return self.report or self.warehouse.parent / "report"

    @property
    def report_index(self) -> Path:
        """The sponsors' report's front page, as each run writes it."""
        return self.report_dir / "sponsors" / "index.html"

    @property
    def work_db(self) -> Path:
        """Beside the published file: rescue.duckdb → rescue.work.duckdb."""
        return self.warehouse.with_name(f"{self.warehouse.stem}.work{self.warehouse.suffix}")

    def site(self, site_id: str) -> SiteConfig:
        for site in self.sites:
            if site.id == site_id:
                return site
        known = ", ".join(s.id for s in self.sites)
        raise ConfigError(f"{self.path}: no site {site_id!r} (sites: {known})")


KEY_ENV = "RESCUE_PSEUDONYM_KEY"
KEY_CHANGED_ENV = "RESCUE_PSEUDONYM_KEY_CHANGED"  # "yes": re-key every hashed subject id, once
LOG_ENV = "RESCUE_LOG_JSON"


@dataclass(frozen=True)
class Environment:
    """What the pipeline reads from the process environment, read in this one place: the
    configuration's path, the pseudonym key, where JSON logs go, the Dagster instance, and the
    secrets `sites.yaml` names by their variables (it never holds a secret itself)."""

    values: Mapping[str, str]

    @classmethod
    def current(cls) -> Environment:
        return cls(dict(os.environ))

    def _get(self, name: str) -> str | None:
        return self.values.get(name) or None

    @property
    def config_path(self) -> str | None:
        return self._get(CONFIG_ENV)

    @property
    def pseudonym_key(self) -> str | None:
        return self._get(KEY_ENV)

    @property
    def pseudonym_key_changed(self) -> bool:
        """The operator says the key was changed on purpose: re-key the hashed subject ids."""
        return (self._get(KEY_CHANGED_ENV) or "").strip().lower() in ("yes", "true", "1")

    @property
    def log_target(self) -> str | None:
        return self._get(LOG_ENV)

    @property
    def dagster_home(self) -> str | None:
        return self._get("DAGSTER_HOME")

    def secret_names(self, config: Config | None) -> set[str]:
        """The pseudonym key's variable and every site's token and client-secret variables."""
        names = {KEY_ENV}
        for site in config.sites if config else ():
            auth = getattr(site.source, "auth", None)
            if auth is not None:
                names.update(n for n in (auth.token_env, auth.client_secret_env) if n)
        return names

    def secret_values(self, config: Config | None, *, shortest: int = 1) -> tuple[str, ...]:
        """The values of those variables that are set (at least `shortest` characters), to
        mask wherever text leaves the process."""
        values = (self._get(n) or "" for n in sorted(self.secret_names(config)))
        return tuple(v for v in values if len(v) >= shortest)


@cache
def schema() -> dict[str, Any]:
    text = resources.files("rescue_pipeline").joinpath("config_schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """--config wins, then RESCUE_CONFIG; there is no silent default."""
    value = explicit or Environment.current().config_path
    if not value:
        raise ConfigError(
            f"no configuration: pass --config sites.yaml or set {CONFIG_ENV} "
            "(`rescue demo` writes one to rescue-demo/sites.yaml)"
        )
    return Path(value)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a sites.yaml; raise ConfigError naming file, site and key."""
    path = Path(path)
    try:
        if path.stat().st_size > safe_yaml.MAX_BYTES:
            raise ConfigError(f"{path}: larger than {safe_yaml.MAX_BYTES // 1024} KiB")
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    try:
        data = safe_yaml.load(text)
    except safe_yaml.UnsafeYaml as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise ConfigError(f"{path}: not valid YAML: {first}") from None
    return parse_config(data, path)


def parse_config(data: Any, path: Path) -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    data = _jsonable(data)
    _precheck(data, path)
    _validate_schema(data, path)
    base = path.resolve().parent
    sites = tuple(_site(s, base, path) for s in data["sites"])
    analysis = dict(data.get("analysis") or {})
    cutoff = analysis.pop("data_cutoff", None)
    if "pfi_sensitive_days" not in analysis:  # 6 months of month_days, at least (rule book §4)
        month = analysis.get("month_days", AnalysisConfig.month_days)
        analysis["pfi_sensitive_days"] = math.ceil(6 * month)
    return Config(
        path=path,
        study_id=data["study_id"],
        warehouse=_resolve(base, data.get("warehouse", DEFAULT_WAREHOUSE)),
        analysis=AnalysisConfig(
            **analysis, data_cutoff=dt.date.fromisoformat(cutoff) if cutoff else None
        ),
        sites=sites,
        report=_resolve(base, data["report"]) if data.get("report") else None,
        orchestration=OrchestrationConfig(**(data.get("orchestration") or {})),
        duckdb=_duckdb(data.get("duckdb") or {}, base),
        nct_id=data.get("nct_id", schema()["properties"]["nct_id"]["default"]),
    )


def _duckdb(data: dict[str, Any], base: Path) -> DuckDBConfig:
    temp = data.get("temp_directory")
    return DuckDBConfig(
        memory_limit=data.get("memory_limit", DuckDBConfig.memory_limit),
        threads=data.get("threads"),
        temp_directory=_resolve(base, temp) if temp else None,
    )


def _jsonable(value: Any) -> Any:
    """YAML reads 2026-06-30 as a date; the schema speaks JSON, so dates become ISO strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _where(data: dict[str, Any], parts: list[str | int]) -> str:
    """Turn a JSON path into words: sites/1/source/path → site 'site-b': source.path."""
    if len(parts) >= 2 and parts[0] == "sites" and isinstance(parts[1], int):
        sites = data.get("sites") or []
        site = sites[parts[1]] if parts[1] < len(sites) else None
        sid = site.get("id") if isinstance(site, dict) else None
        label = f"site {sid!r}" if sid else f"site #{parts[1] + 1}"
        rest = ".".join(str(p) for p in parts[2:])
        return f"{label}: {rest}" if rest else label
    return ".".join(str(p) for p in parts) or "top level"


def _precheck(data: dict[str, Any], path: Path) -> None:
    """Rules that read better as their own message than as a schema failure."""
    sites = data.get("sites")
    if not isinstance(sites, list):
        return
    seen: set[str] = set()
    for i, site in enumerate(sites):
        if not isinstance(site, dict):
            continue
        sid = site.get("id")
        if isinstance(sid, str):
            if sid in seen:
                raise ConfigError(f"{path}: site {sid!r}: id: duplicate site id")
            seen.add(sid)
        source = site.get("source")
        if not isinstance(source, dict):
            continue
        kind = source.get("kind")
        where = _where(data, ["sites", i, "source", "kind"])
        if kind is None:
            raise ConfigError(f"{path}: {where}: missing (one of {', '.join(SOURCE_KINDS)})")
        if kind not in SOURCE_KINDS:
            raise ConfigError(
                f"{path}: {where}: unknown source kind {kind!r} (one of {', '.join(SOURCE_KINDS)})"
            )
        for key in ("base_url", "token_url"):
            url = source.get(key) or (source.get("auth") or {}).get(key)
            if isinstance(url, str) and re.match(r"^[a-z]+://[^/@]*:[^/@]*@", url):
                raise ConfigError(
                    f"{path}: {_where(data, ['sites', i, 'source', key])}: credentials written "
                    "inline in the URL; use auth with an environment variable"
                )
        for scope, mapping in (("source", source), ("source.auth", source.get("auth"))):
            if not isinstance(mapping, dict):
                continue
            for key, instead in _INLINE_SECRET_KEYS.items():
                if key in mapping:
                    raise ConfigError(
                        f"{path}: {_where(data, ['sites', i])}: {scope}.{key}: a secret written "
                        f"inline; name the environment variable that holds it with {instead}"
                    )


def _validate_schema(data: dict[str, Any], path: Path) -> None:
    import jsonschema  # imported here: keeps `rescue --help` fast

    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    # an unknown key first: a misspelt key (sorce:) also makes its right name missing
    errors = sorted(
        validator.iter_errors(data),
        key=lambda e: (len(e.absolute_path), e.validator != "additionalProperties", e.message),
    )
    if not errors:
        return
    error = errors[-1] if errors[0].validator in ("if", "allOf") else errors[0]
    parts = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        where = _where(data, [*parts, extra[0]] if extra else parts)
        close = difflib.get_close_matches(str(extra[0]), known, n=1) if extra else []
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        raise ConfigError(f"{path}: {where}: unknown key{hint}")
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        where = _where(data, [*parts, missing[0]] if missing else parts)
        raise ConfigError(f"{path}: {where}: required key is missing")
    raise ConfigError(f"{path}: {_where(data, parts)}: {error.message}")


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _auth(data: dict[str, Any] | None, where: str) -> AuthConfig:
    if not data:
        return AuthConfig()
    auth = AuthConfig(**data)
    needs = {
        "bearer": ("token_env",),
        "smart-backend": ("client_id",),
    }.get(auth.kind, ())
    for key in needs:
        if getattr(auth, key) is None:
            raise ConfigError(f"{where}: auth.{key}: required for auth kind {auth.kind!r}")
    if auth.kind == "smart-backend" and not (auth.key_file_env or auth.client_secret_env):
        raise ConfigError(
            f"{where}: auth: smart-backend needs key_file_env (private_key_jwt) "
            "or client_secret_env"
        )
    return auth


def _tokens_over_https(source: FhirSource | BulkSource, where: str) -> None:
    """A bearer or SMART token never travels over plain http (anyone on the path could replay
    it), unless the site says allow_insecure_http: true for a test server on this machine."""
    if source.auth.kind == "none" or source.allow_insecure_http:
        return
    for key, url in (("base_url", source.base_url), ("auth.token_url", source.auth.token_url)):
        if url and url.lower().startswith("http://"):
            raise ConfigError(
                f"{where}: {key}: a {source.auth.kind} token would travel over plain http; use "
                "https (allow_insecure_http: true is for a test server on this machine only)"
            )


def _site(data: dict[str, Any], base: Path, path: Path) -> SiteConfig:
    sid = data["id"]
    src = dict(data["source"])
    kind = src.pop("kind")
    where = f"{path}: site {sid!r}: source"
    source: Source
    if kind == "ndjson":
        source = NdjsonSource(path=_resolve(base, src["path"]))
    else:
        auth = _auth(src.pop("auth", None), where)
        if "types" in src:
            src["types"] = tuple(src["types"])
        if "ca_bundle" in src:
            src["ca_bundle"] = _resolve(base, src["ca_bundle"])
        source = (FhirSource if kind == "fhir" else BulkSource)(auth=auth, **src)
        _tokens_over_https(source, where)
        if isinstance(source, BulkSource) and (source.level == "group") != bool(source.group_id):
            raise ConfigError(
                f"{where}: group_id: "
                + (
                    "required for level: group"
                    if source.level == "group"
                    else "only with level: group"
                )
            )
    timezone = data.get("timezone", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: site {sid!r}: timezone: unknown IANA time zone {timezone!r} "
            "(e.g. Europe/Paris, UTC)"
        ) from None
    return SiteConfig(
        id=sid,
        name=data.get("name"),
        timezone=timezone,
        source=source,
        concept_map=tuple(ConceptMapping(**m) for m in data.get("concept_map") or ()),
        schedule=_cron(data.get("schedule", DEFAULT_SCHEDULE)),
        watch=_resolve(base, data["watch"]) if data.get("watch") else None,
    )


def _cron(value: str) -> str:
    """A daily "HH:MM" (local time) becomes cron; a cron string is kept as written."""
    daily = _DAILY_AT.fullmatch(value)
    return f"{int(daily[2])} {int(daily[1])} * * *" if daily else value
