"""sites.yaml: the typed result, and one clear error naming file, site and key for each mistake."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from rescue_pipeline.config import (
    BulkSource,
    ConfigError,
    FhirSource,
    NdjsonSource,
    config_path,
    load_config,
)


def _base(**site: object) -> dict[str, object]:
    entry = {"id": "site-a", "source": {"kind": "ndjson", "path": "data/site-a"}} | site
    return {"study_id": "RESCUE", "sites": [entry]}


def test_valid_config_is_typed_and_paths_are_relative_to_the_file(
    write_config: Callable[..., Path],
) -> None:
    path = write_config(
        {
            "study_id": "RESCUE",
            "warehouse": "wh/rescue.duckdb",
            "analysis": {"data_cutoff": "2026-06-30", "assessment_interval_days": 84},
            "sites": [
                {
                    "id": "site-a",
                    "timezone": "Europe/Paris",
                    "source": {"kind": "ndjson", "path": "data/site-a"},
                    "concept_map": [
                        {
                            "system": "urn:lab",
                            "code": "CA125",
                            "target_system": "http://loinc.org",
                            "target_code": "10334-1",
                        }
                    ],
                },
                {
                    "id": "site-b",
                    "source": {
                        "kind": "fhir",
                        "base_url": "https://fhir.site-b.example/R4",
                        "auth": {"kind": "bearer", "token_env": "SITE_B_TOKEN"},
                    },
                },
            ],
        }
    )
    config = load_config(path)
    base = path.parent.resolve()
    assert config.warehouse == base / "wh" / "rescue.duckdb"
    assert config.work_db == base / "wh" / "rescue.work.duckdb"
    assert config.analysis.data_cutoff == dt.date(2026, 6, 30)
    assert config.analysis.pfi_sensitive_days == 183  # default: 6 x 30.4375 days
    site_a, site_b = config.sites
    assert isinstance(site_a.source, NdjsonSource)
    assert site_a.source.path == base / "data" / "site-a"
    assert site_a.concept_map[0].target_code == "10334-1"
    assert isinstance(site_b.source, FhirSource)
    assert site_b.source.auth.token_env == "SITE_B_TOKEN"
    assert site_b.timezone == "UTC"


def test_yaml_dates_are_accepted_for_the_cutoff(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "study_id: RESCUE\nanalysis: {data_cutoff: 2026-06-30}\n"
        "sites:\n  - {id: site-a, source: {kind: ndjson, path: a}}\n"
    )
    assert load_config(path).analysis.data_cutoff == dt.date(2026, 6, 30)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            _base(source={"kind": "ftp", "path": "x"}),
            "site 'site-a': source.kind: unknown source kind 'ftp'",
        ),
        (_base(source={"kind": "ndjson"}), "site 'site-a': source.path: required key is missing"),
        (_base(source={"path": "x"}), "site 'site-a': source.kind: missing"),
        (_base(colour="blue"), "site 'site-a': colour: unknown key (known: "),
        (
            {
                "study_id": "RESCUE",
                "sites": [{"id": "site-a", "sorce": {"kind": "ndjson", "path": "x"}}],
            },
            "site 'site-a': sorce: unknown key (did you mean 'source'?)",
        ),
        (
            _base(
                source={
                    "kind": "bulk",
                    "base_url": "https://x/R4",
                    "auth": {"kind": "bearer", "token": "s3cr3t"},
                }
            ),
            "site 'site-a': source.auth.token: a secret written inline; name the environment variable",
        ),
        (
            _base(
                source={
                    "kind": "fhir",
                    "base_url": "https://x/R4",
                    "auth": {"kind": "smart-backend", "client_id": "c", "client_secret": "s3cr3t"},
                }
            ),
            "source.auth.client_secret: a secret written inline",
        ),
        (
            _base(source={"kind": "fhir", "base_url": "https://user:s3cr3t@x/R4"}),
            "site 'site-a': source.base_url: credentials written inline",
        ),
        (
            _base(source={"kind": "fhir", "base_url": "https://x/R4", "auth": {"kind": "bearer"}}),
            "site 'site-a': source: auth.token_env: required",
        ),
        (
            _base(
                source={
                    "kind": "fhir",
                    "base_url": "https://x/R4",
                    "auth": {"kind": "smart-backend", "client_id": "c"},
                }
            ),
            "smart-backend needs key_file_env",
        ),
        (
            _base(source={"kind": "bulk", "base_url": "https://x/R4", "level": "group"}),
            "site 'site-a': source: group_id: required for level: group",
        ),
        (
            _base(source={"kind": "bulk", "base_url": "https://x/R4", "group_id": "g1"}),
            "site 'site-a': source: group_id: only with level: group",
        ),
        (
            _base(source={"kind": "bulk", "base_url": "https://x/R4", "poll_seconds": 0}),
            "site 'site-a': source.poll_seconds: 0 is less than or equal to the minimum",
        ),
        (
            {"sites": [{"id": "site-a", "source": {"kind": "ndjson", "path": "a"}}]},
            "study_id: required key is missing",
        ),
        ({"study_id": "RESCUE", "sites": []}, "sites: [] should be non-empty"),
        ({"study_id": "RESCUE", "sites": [], "extra": 1}, "extra: unknown key"),
        (
            {
                "study_id": "RESCUE",
                "analysis": {"data_cutoff": "30/06/2026"},
                "sites": [{"id": "a", "source": {"kind": "ndjson", "path": "a"}}],
            },
            "analysis.data_cutoff: '30/06/2026' is not a 'date'",
        ),
        (
            {
                "study_id": "RESCUE",
                "sites": [{"id": "Site A", "source": {"kind": "ndjson", "path": "a"}}],
            },
            "site 'Site A': id: 'Site A' does not match",
        ),
        (_base(timezone="Europe/Pariss"), "site 'site-a': timezone: unknown IANA time zone"),
        (_base(schedule="2am"), "site 'site-a': schedule: '2am' does not match"),
        (_base(schedule="25:00"), "site 'site-a': schedule: '25:00' does not match"),
        (
            {**_base(), "orchestration": {"stale_after_hours": 0}},
            "orchestration.stale_after_hours: 0 is less than or equal to the minimum",
        ),
        ({**_base(), "orchestration": {"retry": 3}}, "orchestration.retry: unknown key"),
        (
            {**_base(), "orchestration": {"automation": "on"}},
            "orchestration.automation: 'on' is not one of",
        ),
    ],
)
def test_configuration_errors_name_file_site_and_key(
    write_config: Callable[..., Path], data: dict[str, object], expected: str
) -> None:
    path = write_config(data)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(str(path))
    assert expected in message
    assert "s3cr3t" not in message  # secrets never echoed


def test_a_site_id_with_a_trailing_newline_is_an_error(write_config: Callable[..., Path]) -> None:
    site = {"id": "site-a\n", "source": {"kind": "ndjson", "path": "a"}}
    path = write_config({"study_id": "RESCUE", "sites": [site]})
    with pytest.raises(ConfigError, match="id"):
        load_config(path)
    path = write_config({"study_id": "RESCUE\n", "sites": [{**site, "id": "site-a"}]})
    with pytest.raises(ConfigError, match="study_id"):
        load_config(path)


def test_duplicate_site_ids_are_an_error(write_config: Callable[..., Path]) -> None:
    site = {"id": "site-a", "source": {"kind": "ndjson", "path": "a"}}
    path = write_config({"study_id": "RESCUE", "sites": [site, dict(site)]})
    with pytest.raises(ConfigError, match="site 'site-a': id: duplicate site id"):
        load_config(path)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("study_id: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_config_path_needs_an_explicit_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RESCUE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="pass --config"):
        config_path(None)
    monkeypatch.setenv("RESCUE_CONFIG", "/x/sites.yaml")
    assert config_path(None) == Path("/x/sites.yaml")
    assert config_path("other.yaml") == Path("other.yaml")


def test_unknown_site_lookup_lists_the_known_ones(write_config: Callable[..., Path]) -> None:
    config = load_config(write_config(_base()))
    with pytest.raises(ConfigError, match=r"no site 'site-z' \(sites: site-a\)"):
        config.site("site-z")


def test_bulk_source_keys_and_defaults(write_config: Callable[..., Path]) -> None:
    source = {
        "kind": "bulk",
        "base_url": "https://fhir.site-c.example/R4",
        "auth": {"kind": "bearer", "token_env": "SITE_C_TOKEN"},
        "level": "group",
        "group_id": "rescue-cohort",
        "types": ["Patient", "Observation"],
        "search": {"Observation": {"code": "http://loinc.org|10334-1"}},
        "ca_bundle": "certs/site-c.pem",
    }
    path = write_config(_base(source=source))
    bulk = load_config(path).sites[0].source
    assert isinstance(bulk, BulkSource)
    assert bulk.group_id == "rescue-cohort" and bulk.types == ("Patient", "Observation")
    assert bulk.search == {"Observation": {"code": "http://loinc.org|10334-1"}}
    assert bulk.ca_bundle == path.resolve().parent / "certs" / "site-c.pem"
    assert (bulk.max_wait_seconds, bulk.poll_seconds, bulk.run_wait_minutes) == (3600, 10.0, 60.0)
    assert (bulk.deadline_hours, bulk.delete_when_done) == (72.0, True)


def test_orchestration_defaults_keep_old_files_valid(write_config: Callable[..., Path]) -> None:
    """A sites.yaml written before schedules and sensors existed still loads, with defaults."""
    config = load_config(write_config(_base()))
    assert config.orchestration.stale_after_hours == 36
    assert config.orchestration.retries == 3
    assert config.orchestration.automation == "stopped"
    (site,) = config.sites
    assert site.schedule == "0 2 * * *"  # 02:00 in the site's time zone
    assert site.watch is None
    assert site.watched_folder == config.path.parent.resolve() / "data" / "site-a"


def test_schedule_watch_and_orchestration_are_read(write_config: Callable[..., Path]) -> None:
    data = {
        "study_id": "RESCUE",
        "orchestration": {"stale_after_hours": 12, "retries": 1, "automation": "running"},
        "sites": [
            {
                "id": "site-a",
                "timezone": "Europe/Paris",
                "schedule": "01:30",
                "watch": "drops/a",
                "source": {"kind": "ndjson", "path": "a"},
            },
            {
                "id": "site-b",
                "schedule": "*/15 6-20 * * 1-5",
                "source": {"kind": "fhir", "base_url": "https://x/R4"},
            },
        ],
    }
    config = load_config(write_config(data))
    site_a, site_b = config.sites
    assert site_a.schedule == "30 1 * * *"
    assert site_a.watched_folder == config.path.parent.resolve() / "drops" / "a"
    assert site_b.schedule == "*/15 6-20 * * 1-5"
    assert site_b.watched_folder is None  # a live site is watched only when told where
    assert config.orchestration.stale_after_hours == 12
    assert config.orchestration.automation == "running"


# Hostile or careless sites.yaml: bounded, unambiguous, one line naming file and line.

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
study_id: RESCUE
sites: *i
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS, "more than 100000 values once its aliases are expanded"),
        (
            "study_id: RESCUE\nsites:\n  - {id: site-a, source: {kind: ndjson, path: a}}\n"
            "sites:\n  - {id: site-b, source: {kind: ndjson, path: b}}\n",
            "line 4: duplicate key 'sites' (first on line 2)",
        ),
        (
            'study_id: RESCUE\nsites:\n  - {id: "site-a\\n", source: {kind: ndjson, path: a}}\n',
            "contains a control character",
        ),
        (
            'study_id: RESCUE\nsites:\n  - id: site-a\n    schedule: "02:00\\n"\n'
            "    source: {kind: ndjson, path: a}\n",
            "contains a control character",
        ),
    ],
    ids=["alias_bomb", "duplicate_sites_key", "id_with_newline", "schedule_with_newline"],
)
def test_hostile_yaml_is_refused_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_an_oversized_configuration_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text("study_id: RESCUE\n# " + "x" * (1 << 20) + "\nsites: []\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(path)


def test_aliases_and_merge_keys_written_by_people_still_load(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(
        "study_id: RESCUE\n"
        "sites:\n"
        "  - {id: site-a, source: &src {kind: ndjson, path: a}}\n"
        "  - {id: site-b, source: {<<: *src, path: b}}\n"
        "  - {id: site-c, source: *src}\n"
    )
    config = load_config(path)
    paths = [s.source.path.name for s in config.sites]  # type: ignore[union-attr]
    assert paths == ["a", "b", "a"]


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"kind": "fhir", "base_url": "http://fhir.site-b.example/R4",
          "auth": {"kind": "bearer", "token_env": "SITE_B_TOKEN"}}, "base_url"),
        ({"kind": "bulk", "base_url": "http://fhir.site-b.example/R4",
          "auth": {"kind": "bearer", "token_env": "SITE_B_TOKEN"}}, "base_url"),
        ({"kind": "fhir", "base_url": "https://fhir.site-b.example/R4",
          "auth": {"kind": "smart-backend", "client_id": "c", "key_file_env": "K",
                   "token_url": "http://auth.site-b.example/token"}}, "auth.token_url"),
    ],
    ids=["bearer_fhir", "bearer_bulk", "smart_token_url"],
)  # fmt: skip
def test_a_token_over_plain_http_is_refused_unless_the_site_allows_it(
    write_config: Callable[..., Path], source: dict[str, object], key: str
) -> None:
    path = write_config(_base(source=source))
    with pytest.raises(ConfigError, match=f"{key}: a .* token would travel over plain http"):
        load_config(path)
    allowed = write_config(_base(source={**source, "allow_insecure_http": True}), "ok.yaml")
    assert load_config(allowed).sites[0].source.allow_insecure_http  # type: ignore[union-attr]


def test_plain_http_without_a_token_is_allowed(write_config: Callable[..., Path]) -> None:
    path = write_config(_base(source={"kind": "fhir", "base_url": "http://127.0.0.1:9/R4"}))
    assert load_config(path).sites[0].source.auth.kind == "none"  # type: ignore[union-attr]


def test_the_trial_number_defaults_to_the_schemas_and_can_be_set(tmp_path: Path) -> None:
    from rescue_pipeline.config import Config, schema

    default = schema()["properties"]["nct_id"]["default"]
    assert Config.nct_id == default  # one value, two readers
    (tmp_path / "a").mkdir()
    plain = tmp_path / "plain.yaml"
    plain.write_text("study_id: S\nsites: [{id: a, source: {kind: ndjson, path: a}}]\n")
    assert load_config(plain).nct_id == default
    other = tmp_path / "other.yaml"
    other.write_text("study_id: S\nnct_id: NCT01234567\n" + plain.read_text().split("\n", 1)[1])
    assert load_config(other).nct_id == "NCT01234567"
    bad = tmp_path / "bad.yaml"
    bad.write_text("study_id: S\nnct_id: 1234\n" + plain.read_text().split("\n", 1)[1])
    with pytest.raises(ConfigError, match="nct_id"):
        load_config(bad)


@pytest.mark.parametrize(
    ("analysis", "days"),
    [("{}", 183), ("{month_days: 30}", 180), ("{month_days: 30, pfi_sensitive_days: 200}", 200)],
)
def test_six_months_of_pfi_follow_month_days_unless_set(
    tmp_path: Path, analysis: str, days: int
) -> None:
    """Rule book §4: 6 x 30.4375 = 182.625 days, so at least 183."""
    (tmp_path / "a").mkdir()
    path = tmp_path / "sites.yaml"
    path.write_text(
        f"study_id: S\nanalysis: {analysis}\nsites: [{{id: a, source: {{kind: ndjson, path: a}}}}]\n"
    )
    assert load_config(path).analysis.pfi_sensitive_days == days


def test_the_environment_is_read_in_config_alone() -> None:
    """Every setting that comes from the environment goes through config.Environment (the demo
    may still set its documented key for the runs it starts)."""
    package = Path(__file__).resolve().parents[1] / "rescue_pipeline"
    readers = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if ("os.environ" in (text := p.read_text()) or "getenv(" in text)
        and p.name != "config.py"
        and "os.environ[KEY_ENV] = DEMO_KEY" not in text
    )
    assert readers == []


def test_the_environment_names_its_secrets_without_holding_them_in_sites_yaml(
    tmp_path: Path,
) -> None:
    from rescue_pipeline.config import Environment

    (tmp_path / "a").mkdir()
    path = tmp_path / "sites.yaml"
    path.write_text(
        "study_id: S\nsites:\n  - {id: a, source: {kind: ndjson, path: a}}\n"
        "  - {id: b, source: {kind: fhir, base_url: 'https://b.example/fhir', "
        "auth: {kind: bearer, token_env: B_TOKEN}}}\n"
    )
    config = load_config(path)
    env = Environment({"RESCUE_PSEUDONYM_KEY": "k" * 20, "B_TOKEN": "tok", "OTHER": "x" * 9})
    assert env.secret_names(config) == {"RESCUE_PSEUDONYM_KEY", "B_TOKEN"}
    assert set(env.secret_values(config)) == {"k" * 20, "tok"}
    assert env.secret_values(config, shortest=4) == ("k" * 20,)
    assert Environment({"RESCUE_CONFIG": ""}).config_path is None  # empty is unset
