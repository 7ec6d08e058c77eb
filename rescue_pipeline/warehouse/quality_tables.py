"""Quality tables (DESIGN.md, `quality` schema): the result of every check, per run and site."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, String, Table

from rescue_pipeline.warehouse.tables import _c, metadata

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
    schema="quality",
    comment="One row per run, check and site: Great Expectations suites over every layer.",
)

QUALITY_TABLES = (results,)
