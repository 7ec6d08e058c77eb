"""Quality tables (docs/warehouse.md, `quality` schema): what every check found, per run and
site, and what the sponsors' report and the sites' data queries are made from.

All of them are published, so none holds PHI: counts, codes, resource ids and pseudonymous
subject ids only, never values or the bytes received.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Double, String, Table

from rescue_pipeline.warehouse.tables import TS, _c, metadata

results = Table(
    "results",
    metadata,
    _c("run_id", String, "Quality run (one per pipeline run).", nullable=False),
    _c("site_id", String, "Site the rows checked belong to."),
    _c("layer", String, "raw, core or analysis.", nullable=False),
    _c("table_name", String, "Table checked.", nullable=False),
    _c("expectation", String, "Great Expectations expectation type.", nullable=False),
    _c("description", String, "What the check guards against, in plain language."),
    _c("severity", String, "critical (stops what depends on it) or warning.", nullable=False),
    _c(
        "success",
        Boolean,
        "Whether the check passed (a check that raised is a failure).",
        nullable=False,
    ),
    _c("observed_value", String, "What was observed, or the error the check raised."),
    _c("unexpected_count", BigInteger, "Rows that failed the check."),
    _c(
        "sample_keys", String, "Keys (resource ids, usubjid) of up to 5 failing rows: never values."
    ),
    _c("checked_at", String, "When (UTC, ISO 8601).", nullable=False),
    _c("check_id", String, "The expectation's stable id (names its Dagster check)."),
    _c("suites_sha256", String, "sha256 of the suites this run was checked by."),
    schema="quality",
    comment="One row per run, check and site: Great Expectations suites over every layer.",
)

findings = Table(
    "findings",
    metadata,
    _c("run_id", String, "Quality run that found it.", nullable=False),
    _c("site_id", String, "Site that owns the record.", nullable=False),
    _c("layer", String, "raw, core or analysis.", nullable=False),
    _c(
        "table_name", String, "Table checked (raw.quarantine for lines not landed).", nullable=False
    ),
    _c("check_name", String, "Expectation type, or the quarantine reason code.", nullable=False),
    _c("severity", String, "critical, warning, or quarantine.", nullable=False),
    _c("record_key", String, "Resource id, usubjid or file:line: what to look at.", nullable=False),
    _c("what_is_wrong", String, "The finding in words, for the site's data manager."),
    _c("check_id", String, "The expectation's stable id (quarantined lines: quarantine)."),
    schema="quality",
    comment=(
        "Row-level findings of the latest quality run: the data queries each site's data "
        "managers answer (keys and reasons only, never values)."
    ),
)

load_history = Table(
    "load_history",
    metadata,
    _c("load_id", String, "Load identifier.", nullable=False),
    _c("site_id", String, "Site loaded.", nullable=False),
    _c("resource_type", String, "Resource type counted.", nullable=False),
    _c("received", BigInteger, "Lines received.", nullable=False),
    _c("accepted", BigInteger, "Lines accepted.", nullable=False),
    _c("quarantined", BigInteger, "Lines quarantined.", nullable=False),
    _c("started_at", TS, "Load start (UTC).", nullable=False),
    _c("new_versions", BigInteger, "Accepted lines that were versions not held before."),
    schema="quality",
    comment="Counts of every load so far (raw.loads without raw): the report's trends.",
)

quarantine_counts = Table(
    "quarantine_counts",
    metadata,
    _c("load_id", String, "Load whose lines were quarantined.", nullable=False),
    _c("site_id", String, "Site.", nullable=False),
    _c("resource_type", String, "Resource type of the file."),
    _c("reason", String, "Reason code.", nullable=False),
    _c("lines", BigInteger, "Lines quarantined for that reason.", nullable=False),
    schema="quality",
    comment="Quarantined lines per load, site, type and reason (counts, never the bytes).",
)

publications = Table(
    "publications",
    metadata,
    _c(
        "published_at",
        TS,
        "When this publish renamed the warehouse into place (UTC).",
        nullable=False,
    ),
    _c("site_id", String, "Site.", nullable=False),
    _c(
        "status",
        String,
        "published (this load's data) or held (a critical check failed for the site: its "
        "last published data kept, or none if it never passed).",
        nullable=False,
    ),
    _c("data_as_of", TS, "When the site's data now published were first published."),
    _c("reason", String, "For held sites: the critical checks that failed, with row counts."),
    schema="quality",
    comment="One row per publish and site: whose data the published warehouse holds, and why.",
)


completeness = Table(
    "completeness",
    metadata,
    _c("run_id", String, "Quality run.", nullable=False),
    _c("checked_at", String, "When (UTC, ISO 8601).", nullable=False),
    _c("site_id", String, "Site.", nullable=False),
    _c("table_name", String, "Core table.", nullable=False),
    _c("field", String, "Key field of that table.", nullable=False),
    _c("rows", BigInteger, "Rows of the site in the table.", nullable=False),
    _c("filled", BigInteger, "Rows where the field is not null.", nullable=False),
    schema="quality",
    comment="Completeness of each core table's key fields per site, at every quality run.",
)

kri = Table(
    "kri",
    metadata,
    _c("run_id", String, "Quality run.", nullable=False),
    _c("checked_at", String, "When (UTC, ISO 8601).", nullable=False),
    _c("site_id", String, "Site.", nullable=False),
    _c("kri", String, "Key risk indicator (rescue_pipeline.quality.kri).", nullable=False),
    _c(
        "numerator",
        Double,
        "What the indicator counts (for an indicator in days: the site's value).",
        nullable=False,
    ),
    _c("denominator", BigInteger, "What it counts over (0: nothing to count).", nullable=False),
    schema="quality",
    comment="Key risk indicators per site at every quality run: counts only, never a record.",
)

QUALITY_TABLES = (
    results, findings, load_history, quarantine_counts, publications, completeness, kri,
)  # fmt: skip
