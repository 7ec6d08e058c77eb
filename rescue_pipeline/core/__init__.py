"""The core layer: clinical tables built from the raw layer (flat views, then set-based SQL)."""
