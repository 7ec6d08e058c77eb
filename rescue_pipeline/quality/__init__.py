"""The quality layer: Great Expectations suites at every layer, and the gate before publishing."""
