"""Pure clinical rules: typed functions over plain values, each citing the definition it follows.

Nothing here imports the warehouse, Dagster or the configuration loader; callers fetch the facts
(set-based SQL) and hand them in.
"""
