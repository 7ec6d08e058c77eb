"""SQL on FHIR v2 ViewDefinitions compiled to DuckDB SQL."""

from rescue_pipeline.viewdef.compiler import UnsupportedFeature, ViewError, compile_view

__all__ = ["UnsupportedFeature", "ViewError", "compile_view"]
