"""The analysis layer: eligibility with evidence, ADSL and ADTTE, derived from core."""
