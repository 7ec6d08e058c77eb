"""Table definitions of the working database: the data dictionary's single source.

Comments on tables and columns are the documentation analysts and data engineers read
(`rescue dictionary`, Dagster metadata, DuckDB's own `COMMENT ON`), so they say what a value means,
not how it is computed. Table names are contracts (docs/warehouse.md): columns may grow, never
change meaning. No integer surrogate keys: duckdb-engine turns them into SERIAL, which DuckDB
rejects.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

metadata = MetaData()

TS = DateTime(timezone=True)


# DuckDB's own choice for long JSON text (dictionary/FSST) stores it at half its size and is
# slow to write; zstd stores it at a sixth and checkpoints in half the time, and reads as fast.
ZSTD = "zstd"


def _c(
    name: str, type_: Any, comment: str, *, nullable: bool = True, compression: str | None = None
) -> Column[Any]:
    info = {"compression": compression} if compression else {}
    return Column(name, type_, nullable=nullable, comment=comment, info=info)


fhir_resource_versions = Table(
    "fhir_resource_versions",
    metadata,
    _c("site_id", String, "Site the resource came from (sites.yaml id).", nullable=False),
    _c("resource_type", String, "FHIR resourceType.", nullable=False),
    _c("resource_id", String, "FHIR logical id, unique within site and type.", nullable=False),
    _c("version_id", String, "meta.versionId as sent (may be absent)."),
    _c("last_updated", TS, "meta.lastUpdated as sent (may be absent)."),
    _c(
        "payload",
        JSON,
        "The resource as compact JSON in the order the site sent it (numbers as read: 1.50 "
        "is 1.5). as_received has the line itself when it differs.",
        nullable=False,
        compression=ZSTD,
    ),
    _c(
        "payload_sha256",
        String(64),
        "sha256 of the payload: identifies this version (whitespace makes no new one).",
        nullable=False,
    ),
    _c("received_at", TS, "When this version first arrived.", nullable=False),
    _c("load_id", String, "Load that first brought this version.", nullable=False),
    _c(
        "arrival",
        BigInteger,
        "Arrival order across loads: breaks ties between versions.",
        nullable=False,
    ),
    _c("source", String, "File or URL the version first came from."),
    _c("line_number", BigInteger, "Line of that file (1-based), for NDJSON sources."),
    _c(
        "as_received",
        String,
        "The line exactly as received (after a file's byte-order mark and the line end), when "
        "it is not byte for byte the payload: whitespace and numbers as sent (1.50, 28-digit "
        "decimals, 30-digit integers). NULL: the payload is the line (for versions landed "
        "before this column existed, whose payload has sorted keys: the line was not kept).",
        compression=ZSTD,
    ),
    schema="raw",
    comment=(
        "Every distinct version of every FHIR resource received, each once (PHI: raw layer only). "
        "The current version per resource is raw.fhir_resources."
    ),
)

quarantine = Table(
    "quarantine",
    metadata,
    _c("site_id", String, "Site the line came from.", nullable=False),
    _c("resource_type", String, "Resource type of the file (or of the line, when readable)."),
    _c("resource_id", String, "FHIR id, when it could be read."),
    _c("source", String, "File or URL the bytes came from.", nullable=False),
    _c("line_number", BigInteger, "Line of that file (1-based).", nullable=False),
    _c(
        "reason", String, "Reason code (see rescue_pipeline.raw.structure.REASONS).", nullable=False
    ),
    _c("element", String, "Element at fault, when one is (e.g. valueQuantity.value)."),
    _c("detail", String, "The reason in words, for the site's data manager.", nullable=False),
    _c("raw_bytes", LargeBinary, "The bytes exactly as received.", nullable=False),
    _c("bytes_sha256", String(64), "sha256 of raw_bytes: reloading adds nothing.", nullable=False),
    _c("load_id", String, "Load that first quarantined these bytes.", nullable=False),
    _c("received_at", TS, "When the bytes arrived.", nullable=False),
    schema="raw",
    comment="Every line received that could not be accepted, with why, and its bytes as received.",
)

loads = Table(
    "loads",
    metadata,
    _c("load_id", String, "Load identifier (one per site per run).", nullable=False),
    _c("site_id", String, "Site loaded.", nullable=False),
    _c("resource_type", String, "Resource type counted.", nullable=False),
    _c("received", BigInteger, "Lines received (= accepted + quarantined).", nullable=False),
    _c("accepted", BigInteger, "Lines that passed the structural checks.", nullable=False),
    _c("quarantined", BigInteger, "Lines sent to raw.quarantine.", nullable=False),
    _c(
        "new_versions",
        BigInteger,
        "Accepted lines that were versions not seen before.",
        nullable=False,
    ),
    _c("started_at", TS, "When the load started.", nullable=False),
    _c("finished_at", TS, "When the last file of this type was committed."),
    PrimaryKeyConstraint("load_id", "site_id", "resource_type"),
    schema="raw",
    comment="Per load, site and resource type: what was received, accepted and quarantined.",
)

deletions = Table(
    "deletions",
    metadata,
    _c("site_id", String, "Site that reported the deletion.", nullable=False),
    _c(
        "resource_type",
        String,
        "FHIR resourceType deleted (from request.url Type/id).",
        nullable=False,
    ),
    _c("resource_id", String, "FHIR logical id deleted.", nullable=False),
    _c(
        "deleted_at",
        TS,
        "When the site deleted it (UTC): the entry's response.lastModified, else the Bundle's "
        "timestamp or meta.lastUpdated, else the time of the source (see deleted_at_basis).",
        nullable=False,
    ),
    _c(
        "deleted_at_basis",
        String,
        "Where deleted_at comes from: entry, bundle, export (the Bulk manifest's "
        "transactionTime), file (the deletion file's modification time) or received (the time "
        "we received it).",
        nullable=False,
    ),
    _c("version_id", String, "The deletion's version, from response.etag, when sent."),
    _c("source", String, "File or URL the deletion came from.", nullable=False),
    _c(
        "line_number", BigInteger, "Line of that file (1-based): one Bundle a line.", nullable=False
    ),
    _c("entry_index", BigInteger, "Entry of that Bundle (0-based).", nullable=False),
    _c("entry", JSON, "The Bundle entry as received (canonical JSON).", nullable=False),
    _c("entry_sha256", String(64), "sha256 of the entry's canonical JSON.", nullable=False),
    _c("load_id", String, "Load that first received this deletion.", nullable=False),
    _c("received_at", TS, "When this deletion first arrived.", nullable=False),
    PrimaryKeyConstraint("site_id", "resource_type", "resource_id", "deleted_at"),
    schema="raw",
    comment=(
        "Every deletion a site reported (Bulk Data deleted files, REST type-level history, an "
        "NDJSON folder's deleted/), each once per resource and instant. A deleted resource "
        "leaves raw.fhir_resources until a newer version arrives; its versions stay."
    ),
)

deletion_loads = Table(
    "deletion_loads",
    metadata,
    _c("load_id", String, "Load identifier.", nullable=False),
    _c("site_id", String, "Site loaded.", nullable=False),
    _c("resource_type", String, "Resource type deleted (Bundle when unreadable).", nullable=False),
    _c("received", BigInteger, "Deletion entries (and unreadable lines) received.", nullable=False),
    _c(
        "recorded", BigInteger, "Deletions not seen before, added to raw.deletions.", nullable=False
    ),
    _c("quarantined", BigInteger, "Entries or lines sent to raw.quarantine.", nullable=False),
    _c("finished_at", TS, "When they were committed.", nullable=False),
    PrimaryKeyConstraint("load_id", "site_id", "resource_type"),
    schema="raw",
    comment="Per load, site and resource type: deletions received, recorded and quarantined.",
)

version_validation = Table(
    "version_validation",
    metadata,
    _c("site_id", String, "Site of the version.", nullable=False),
    _c("resource_type", String, "FHIR resourceType.", nullable=False),
    _c("resource_id", String, "FHIR id.", nullable=False),
    _c("payload_sha256", String(64), "Version validated.", nullable=False),
    _c(
        "outcome",
        String,
        "valid, invalid, or not_in_r4b (type unknown to the R4B models).",
        nullable=False,
    ),
    _c("findings", String, "What full validation found, one finding per line (no values)."),
    _c("validator", String, "Validator and version.", nullable=False),
    _c("validated_at", TS, "When it was validated.", nullable=False),
    # No key constraint: DuckDB holds a key's index in memory (a gigabyte at 7 million
    # versions); each version is validated once because only those not here are read.
    schema="raw",
    comment=(
        "Full FHIR validation of each distinct version, run once per version after the publish. "
        "Findings are recorded against the accepted version; they never move it."
    ),
)

landed_files = Table(
    "landed_files",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c("source", String, "File landed.", nullable=False),
    _c(
        "file_sha256",
        String(64),
        "sha256 of the bytes landed: the whole file as read.",
        nullable=False,
    ),
    _c("size_bytes", BigInteger, "Bytes landed (the file size as read).", nullable=False),
    _c("lines", BigInteger, "Lines read.", nullable=False),
    _c("load_id", String, "Load that landed it.", nullable=False),
    _c("landed_at", TS, "When it was committed.", nullable=False),
    PrimaryKeyConstraint("site_id", "source", "file_sha256"),
    schema="ops",
    comment="Ledger of files landed whole: an unchanged file is not read again.",
)

runs = Table(
    "runs",
    metadata,
    _c("load_id", String, "Load identifier.", nullable=False),
    _c("site_id", String, "Site.", nullable=False),
    _c("source_kind", String, "ndjson, fhir or bulk.", nullable=False),
    _c("started_at", TS, "Start.", nullable=False),
    _c("finished_at", TS, "End (null while running or if killed)."),
    _c(
        "status",
        String,
        "running, succeeded, failed, stopped (a signal stopped it: rolled back), or "
        "interrupted (the process died; closed by the next run).",
        nullable=False,
    ),
    _c("files_read", BigInteger, "Files read."),
    _c("files_unchanged", BigInteger, "Files skipped because already landed."),
    _c("message", String, "Failure reason (never secrets or PHI)."),
    _c("full", Boolean, "Whether it ignored watermarks."),
    PrimaryKeyConstraint("load_id"),
    schema="ops",
    comment="One row per site load: status and timing.",
)

watermarks = Table(
    "watermarks",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c("resource_type", String, "FHIR resourceType searched.", nullable=False),
    _c(
        "mark",
        TS,
        "The next incremental search asks for resources updated after this instant (UTC): the "
        "greatest meta.lastUpdated landed, minus the site's overlap window.",
        nullable=False,
    ),
    _c("updated_at", TS, "When the mark was last advanced.", nullable=False),
    _c("load_id", String, "Load whose committed landing advanced it.", nullable=False),
    PrimaryKeyConstraint("site_id", "resource_type"),
    schema="ops",
    comment="Per site and resource type: where the next incremental extract starts.",
)

deletion_marks = Table(
    "deletion_marks",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c("resource_type", String, "FHIR resourceType whose history is read.", nullable=False),
    _c(
        "mark",
        TS,
        "The next type-level history read (kind: fhir) asks for changes since this instant "
        "(UTC): the latest change it saw, minus the site's overlap window.",
        nullable=False,
    ),
    _c("updated_at", TS, "When the mark was last advanced.", nullable=False),
    _c("load_id", String, "Load whose committed landing advanced it.", nullable=False),
    PrimaryKeyConstraint("site_id", "resource_type"),
    schema="ops",
    comment="Per REST site and resource type: where the next read of deletions starts.",
)

bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    _c("site_id", String, "Site.", nullable=False),
    _c(
        "kicked_off_at",
        TS,
        "When we asked for the export (UTC); the site's deadline_hours count from here.",
        nullable=False,
    ),
    _c(
        "status_url",
        String,
        "Where the server reports the export's progress (its Content-Location answer to the "
        "kick-off), as the server gave it: a later run resumes polling it.",
        nullable=False,
    ),
    _c("kickoff_url", String, "The $export request as sent, credentials redacted.", nullable=False),
    _c("level", String, "system, group or patient.", nullable=False),
    _c("resource_types", String, "Types asked for (_type), comma-separated.", nullable=False),
    _c("since", TS, "_since sent (UTC); null when the export asked for everything."),
    _c("load_id", String, "Load that kicked it off.", nullable=False),
    _c(
        "state",
        String,
        "polling: in progress, the next run resumes it; complete: landed and the watermarks "
        "advanced; abandoned: lost by the server (404/410), past its deadline or superseded by a "
        "full load; failed: its manifest or files could not be read.",
        nullable=False,
    ),
    _c("progress", String, "The last X-Progress the server sent."),
    _c("polled_at", TS, "When its status was last asked."),
    _c("transaction_time", TS, "The manifest's transactionTime: the next export's _since."),
    _c("output_files", BigInteger, "Data files the manifest listed."),
    _c("error_files", BigInteger, "OperationOutcome files the manifest listed (kept, not data)."),
    _c("error_lines", BigInteger, "OperationOutcomes in those files."),
    _c(
        "error_paths",
        String,
        "Where the error files were saved, one path a line (removed with the load's folder "
        "unless the site sets keep_extract_days; their issue texts are in the run log).",
    ),
    _c("finished_load_id", String, "Load that landed it, or gave it up."),
    _c("finished_at", TS, "When it was landed or given up."),
    _c("message", String, "Why it was abandoned or failed (never a secret)."),
    PrimaryKeyConstraint("site_id", "kicked_off_at"),
    schema="ops",
    comment=(
        "Bulk Data exports asked of kind: bulk sites: the one in progress per site (state "
        "polling, resumed by the next run if this one stops) and the history of earlier ones."
    ),
)

derivations = Table(
    "derivations",
    metadata,
    _c(
        "fingerprint",
        String(64),
        "sha256 over everything a derivation reads: the raw layer's counts and newest loads, "
        "the configuration that shapes the tables, the effective cut-off, the pseudonym key and "
        "the pipeline's code and library versions.",
        nullable=False,
    ),
    _c("built_at", TS, "When the core layer was built from these inputs.", nullable=False),
    _c("published_at", TS, "When what was built from them was published (null: not yet)."),
    schema="ops",
    comment="Each core build's inputs, and whether it reached the published warehouse: a run "
    "whose inputs are those of the last publish rebuilds nothing.",
)

run_reports = Table(
    "run_reports",
    metadata,
    _c(
        "report_id",
        String,
        "The run this part belongs to: the command's run (tag rescue/run) when the command line "
        "started it, else the Dagster run id.",
        nullable=False,
    ),
    _c("dagster_run_id", String, "The Dagster run whose step wrote the part.", nullable=False),
    _c("job", String, "The Dagster job (site_load, site_full_reload, replay, validate)."),
    _c("part", String, "load, core, analysis, quality, publication or validation.", nullable=False),
    _c("site_id", String, "The site of a load part."),
    _c("recorded_at", TS, "When the step recorded it (UTC).", nullable=False),
    _c("body", JSON, "The part as JSON (rescue_pipeline.run_report's schema).", nullable=False),
    schema="ops",
    comment="What each step of each run did, as the typed run report reads it back: the "
    "command line, rescue status and the Dagster metadata display these, never work them out.",
)

RAW_TABLES = (
    fhir_resource_versions,
    quarantine,
    loads,
    deletions,
    deletion_loads,
    version_validation,
)
OPS_TABLES = (landed_files, runs, watermarks, deletion_marks, bulk_jobs, derivations, run_reports)

# A deleted resource leaves the view: its current version is hidden when the site's latest
# deletion of it is at or after that version's meta.lastUpdated (a version without lastUpdated:
# when it was received no later than the deletion). A version newer than the deletion (a
# re-created resource) is current again, whenever it arrived; an older version arriving after
# the deletion is not. Every version stays in raw.fhir_resource_versions. (A LEFT JOIN rather
# than NOT EXISTS: DuckDB then pushes a filter on resource_type down, as for the plain view.)
CURRENT_VIEW_SQL = """
CREATE OR REPLACE VIEW raw.fhir_resources AS
WITH ranked AS (
    SELECT v.*,
        row_number() OVER (
            PARTITION BY site_id, resource_type, resource_id
            ORDER BY TRY_CAST(version_id AS BIGINT) DESC NULLS LAST,
                     last_updated DESC NULLS LAST,
                     version_id DESC NULLS LAST,
                     arrival DESC
        ) AS rank_in_resource
    FROM raw.fhir_resource_versions v
),
latest_deletion AS (
    SELECT site_id, resource_type, resource_id,
           max(deleted_at) AS deleted_at, max(received_at) AS deletion_received_at
    FROM raw.deletions
    GROUP BY ALL
)
SELECT r.* EXCLUDE (rank_in_resource)
FROM ranked r
LEFT JOIN latest_deletion d USING (site_id, resource_type, resource_id)
WHERE r.rank_in_resource = 1
  AND (d.deleted_at IS NULL
       OR r.last_updated > d.deleted_at
       OR (r.last_updated IS NULL AND r.received_at > d.deletion_received_at))
"""
CURRENT_VIEW_COMMENT = (
    "The current version of each resource: highest numeric meta.versionId, then latest "
    "meta.lastUpdated, then latest arrival. An older version arriving late is kept in "
    "fhir_resource_versions "
    "but does not become current. A resource the site deleted (raw.deletions) is left out "
    "unless its current version is newer than the deletion (re-created): meta.lastUpdated "
    "after deleted_at, or, without lastUpdated, received after the deletion."
)
