-- core.partial_dates: records a site dated only to the month (YYYY-MM) or the year (YYYY), valid
-- FHIR that no full-date column can hold. Each gets the earliest and latest full date it allows;
-- the screening rules try every date in between (rule book §1 "Dates"). The record itself stays
-- in its core table with an empty date, except a CA-125 result, whose table wants a full date:
-- its value is kept here.
CREATE OR REPLACE TEMP MACRO partial_earliest(t) AS
    CASE WHEN TRY_CAST(substr(t, 1, 10) AS DATE) IS NOT NULL THEN NULL
         WHEN regexp_full_match(t, '[0-9]{4}-[0-9]{2}') THEN TRY_CAST(t || '-01' AS DATE)
         WHEN regexp_full_match(t, '[0-9]{4}') THEN TRY_CAST(t || '-01-01' AS DATE)
    END;

CREATE OR REPLACE TEMP TABLE partial_sent AS
SELECT t.usubjid, 'tumour_assessment' AS kind, NULL::DOUBLE AS value_u_per_ml,
       NULL::BOOLEAN AS below_lod,
       coalesce(o.effective, o.effective_start) AS day, t.site_id, t.source_type, t.source_id
FROM core.tumour_assessments t
JOIN flat.observation o ON o.site_id = t.site_id AND o.id = t.source_id
WHERE t.assessed_on IS NULL AND t.source_type = 'Observation'
UNION ALL
SELECT d.usubjid, 'disease_status', NULL, NULL, coalesce(o.effective, o.effective_start),
       d.site_id, d.source_type, d.source_id
FROM core.disease_statuses d
JOIN flat.observation o ON o.site_id = d.site_id AND o.id = d.source_id
WHERE d.assessed_on IS NULL
UNION ALL
SELECT r.usubjid, 'resectability', NULL, NULL, coalesce(o.effective, o.effective_start),
       r.site_id, r.source_type, r.source_id
FROM core.resectability r
JOIN flat.observation o ON o.site_id = r.site_id AND o.id = r.source_id
WHERE r.judged_on IS NULL
UNION ALL
SELECT f.usubjid, 'finding', NULL, NULL, coalesce(o.effective, o.effective_start),
       f.site_id, f.source_type, f.source_id
FROM core.screening_findings f
JOIN flat.observation o ON o.site_id = f.site_id AND o.id = f.source_id
WHERE f.recorded_on IS NULL
UNION ALL
SELECT d.usubjid, 'dose', NULL, NULL, g.started, d.site_id, d.source_type, d.source_id
FROM core.drug_administrations d
JOIN (
    SELECT site_id, 'MedicationAdministration' AS source_type, id,
           coalesce(effective, effective_start) AS started
    FROM flat.medication_administration
    UNION ALL
    SELECT site_id, 'MedicationRequest', id, coalesce(start, authored) FROM flat.medication_request
    UNION ALL
    SELECT site_id, 'MedicationStatement', id, coalesce(start, effective)
    FROM flat.medication_statement
) g ON g.site_id = d.site_id AND g.source_type = d.source_type AND g.id = d.source_id
WHERE d.started_on IS NULL
UNION ALL
SELECT s.usubjid, 'ca125', o.value_number * u.factor,
       coalesce(o.value_comparator IN ('<', '<='), false), coalesce(o.effective, o.effective_start),
       o.site_id, 'Observation', o.id
FROM flat.observation o
JOIN core_stage.resource_concept rc
  ON rc.site_id = o.site_id AND rc.resource_type = 'Observation' AND rc.id = o.id
JOIN core_stage.resource_subject s
  ON s.site_id = o.site_id AND s.resource_type = 'Observation' AND s.id = o.id
LEFT JOIN terminology.ca125_units u ON u.unit = coalesce(o.value_unit_code, o.value_unit)
WHERE rc.concept = 'ca125' AND o.status IN ('final', 'amended', 'corrected')
  AND TRY_CAST(substr(coalesce(o.effective, o.effective_start), 1, 10) AS DATE) IS NULL
UNION ALL
-- a secondary cancer's onset (else its recorded date), as core_stage.secondary_onsets reads it
SELECT s.usubjid, 'secondary_onset', NULL, NULL, coalesce(c.onset, c.recorded),
       c.site_id, 'Condition', c.id
FROM flat.condition c
JOIN core_stage.resource_concept rc
  ON rc.site_id = c.site_id AND rc.resource_type = 'Condition' AND rc.id = c.id
JOIN core_stage.resource_subject s
  ON s.site_id = c.site_id AND s.resource_type = 'Condition' AND s.id = c.id
WHERE rc.concept = 'secondary_malignancy'
  AND c.verification IS DISTINCT FROM 'entered-in-error'
  AND TRY_CAST(substr(coalesce(c.onset, c.recorded), 1, 10) AS DATE) IS NULL;

INSERT INTO core.partial_dates BY NAME
SELECT usubjid, kind, earliest,
       CASE WHEN length(day) = 7 THEN last_day(earliest)
            ELSE make_date(year(earliest), 12, 31) END AS latest,
       CASE WHEN length(day) = 7 THEN 'month' ELSE 'year' END AS precision,
       value_u_per_ml, below_lod, site_id, source_type, source_id
FROM (SELECT *, partial_earliest(day) AS earliest FROM partial_sent)
WHERE earliest IS NOT NULL;

DROP TABLE partial_sent;
DROP MACRO partial_earliest;
