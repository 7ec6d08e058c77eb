"""rescue-pipeline: the RESCUE trial's FHIR R4 to DuckDB clinical-data pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rescue-pipeline")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
