-- core.ca125_measurements: every CA-125 result in U/mL; unconvertible units flagged, kept.
-- Only results that count (rule book §1): status final, amended or corrected.
INSERT INTO core.ca125_measurements BY NAME
SELECT s.usubjid,
       TRY_CAST(substr(coalesce(o.effective, o.effective_start), 1, 10) AS DATE) AS measured_on,
       coalesce(o.effective, o.effective_start) AS measured_at,
       o.value_number * u.factor AS value_u_per_ml,
       coalesce(o.value_comparator IN ('<', '<='), false) AS below_lod,
       u.factor IS NOT NULL AS unit_convertible,
       o.value_number AS original_value,
       coalesce(o.value_unit_code, o.value_unit) AS original_unit,
       o.site_id, 'Observation' AS source_type, o.id AS source_id
FROM flat.observation o
JOIN core_stage.resource_concept rc
  ON rc.site_id = o.site_id AND rc.resource_type = 'Observation' AND rc.id = o.id
JOIN core_stage.resource_subject s
  ON s.site_id = o.site_id AND s.resource_type = 'Observation' AND s.id = o.id
LEFT JOIN terminology.ca125_units u ON u.unit = coalesce(o.value_unit_code, o.value_unit)
WHERE rc.concept = 'ca125' AND o.status IN ('final', 'amended', 'corrected')
  -- a full date: a result dated to the month or year ("2024-03", valid FHIR) is kept in
  -- core.partial_dates, where the screening rules try every date it allows
  AND TRY_CAST(substr(coalesce(o.effective, o.effective_start), 1, 10) AS DATE) IS NOT NULL;
