"""SQL on FHIR v2 ViewDefinitions compiled to DuckDB SQL (the declared flattening of issue 4)."""

from rescue_pipeline.viewdef.compiler import UnsupportedFeature, ViewError, compile_view

__all__ = ["UnsupportedFeature", "ViewError", "compile_view"]
