"""Completeness of the core tables' key fields, per site, kept at every quality run so the
sponsors' report can show the trend from load to load.

The key fields are the ones the eligibility and PFS derivations read: a gap there is a gap in
the trial's answers, whatever the rest of the record holds.
"""

from __future__ import annotations

import duckdb

from rescue_pipeline.warehouse.quality_tables import completeness

KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "core.subjects": ("sex", "birth_year", "consented_on", "consent_data_transfer"),
    "core.diagnoses": ("primary_site", "histology_code", "stage", "diagnosed_on"),
    "core.regimens": ("drugs", "started_on", "ended_on"),
    "core.ca125_measurements": ("measured_on", "value_u_per_ml", "original_unit"),
    "core.surgeries": ("surgery_type", "performed_on", "residual_disease"),
    "core.tumour_assessments": ("assessed_on", "response", "basis"),
}


def write_completeness(con: duckdb.DuckDBPyConnection, run_id: str, checked_at: str) -> None:
    """One row per site, table and key field: rows and rows with the field filled."""
    parts = [
        f"SELECT site_id, '{table}' AS table_name, '{field}' AS field, count(*) AS rows, "
        f'count("{field}") AS filled FROM {table} GROUP BY site_id'
        for table, fields in KEY_FIELDS.items()
        for field in fields
    ]  # table and field names are the constants above, never data
    con.execute(
        f"INSERT INTO {completeness.fullname} SELECT ?, ?, * FROM ({' UNION ALL '.join(parts)})",
        [run_id, checked_at],
    )
