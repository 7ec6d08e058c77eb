"""Names the Dagster wiring shares: asset keys, the warehouse pool, run tags."""

from collections.abc import Mapping
from types import MappingProxyType

import dagster as dg

RAW_RESOURCES = dg.AssetKey(["raw", "fhir_resources"])
RAW_VALIDATION = dg.AssetKey(["raw", "version_validation"])
PUBLISHED = dg.AssetKey(["warehouse", "published"])
QUALITY = dg.AssetKey(["quality", "results"])
REPORT = dg.AssetKey(["report", "sponsors"])

# The op that runs raw/fhir_resources: run config for a load (`full`, `drop`) goes under it.
LOAD_OP = RAW_RESOURCES.to_python_identifier()

# Every step that opens the working database takes a slot of this pool. DuckDB allows one
# process to hold the file read-write (and then no other process may open it at all), so the
# instance limits the pool to 1 (dagster_home/*.yaml: concurrency.pools.default_limit).
WAREHOUSE_POOL = "rescue_warehouse"

# The command line's runs (in-process executor, one step at a time) run the asset checks, which
# only annotate assets for the UI by reading back what a step stored, after the publish and the
# report when all are ready: what analysts and sponsors wait for comes first. Only there: in the
# daemon's runs a step's priority also orders its claim on the warehouse pool across runs.
LAST_IN_RUN: Mapping[str, str] = MappingProxyType({"dagster/priority": "-1"})

SITE_TAG = "rescue/site"  # one run per site at a time (tag_concurrency_limits)
TRIGGER_TAG = "rescue/trigger"  # schedule, sensor, ui
DROP_TAG = "rescue/drop"  # the drop a sensor run lands
FULL_TAG = "rescue/full"
REPORT_TAG = "rescue/run"  # the run report a command's Dagster runs share
PUBLISH_TAG = "rescue/publish"  # replay runs: one at a time (tag_concurrency_limits)


def dagster_name(site_id: str) -> str:
    """Site ids have dashes; Dagster names allow letters, digits and underscores only (site ids
    never hold underscores, so the mapping is one to one)."""
    return site_id.replace("-", "_")
