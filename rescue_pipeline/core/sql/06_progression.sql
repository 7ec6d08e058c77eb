-- core.progression_events: documented progression after randomisation.
INSERT INTO core.progression_events BY NAME
SELECT t.usubjid, t.assessed_on AS progressed_on, t.basis, t.site_id, t.source_type, t.source_id
FROM core.tumour_assessments t JOIN core.subjects s USING (usubjid)
WHERE t.response = 'PD' AND s.randomised_on IS NOT NULL AND t.assessed_on > s.randomised_on
UNION ALL
SELECT d.usubjid, d.assessed_on, 'disease_status', d.site_id, d.source_type, d.source_id
FROM core.disease_statuses d JOIN core.subjects s USING (usubjid)
WHERE d.status = 'worsened' AND NOT d.imaging
  AND s.randomised_on IS NOT NULL AND d.assessed_on > s.randomised_on;
