-- core.drug_administrations: doses, and oral courses from requests and statements.
INSERT INTO core.drug_administrations BY NAME
WITH given AS (
    SELECT site_id, 'MedicationAdministration' AS source_type, id, patient_id, 'administration' AS kind,
           coalesce(effective, effective_start) AS started, effective_end AS ended,
           CASE WHEN effective IS NOT NULL THEN 'effectiveDateTime'
                ELSE 'effectivePeriod.start' END AS dated_by
    FROM flat.medication_administration
    WHERE status IS NULL OR status NOT IN ('entered-in-error', 'not-done', 'stopped')
    UNION ALL
    SELECT site_id, 'MedicationRequest', id, patient_id, 'oral_course', coalesce(start, authored), "end",
           CASE WHEN start IS NOT NULL THEN 'dosageInstruction.timing.repeat.boundsPeriod.start'
                ELSE 'authoredOn' END
    FROM flat.medication_request
    WHERE (status IS NULL OR status NOT IN ('entered-in-error', 'cancelled', 'draft'))
      AND (intent IS NULL OR intent IN ('order', 'original-order', 'instance-order', 'plan'))
    UNION ALL
    SELECT site_id, 'MedicationStatement', id, patient_id, 'oral_course', coalesce(start, effective), "end",
           CASE WHEN start IS NOT NULL THEN 'effectivePeriod.start' ELSE 'effectiveDateTime' END
    FROM flat.medication_statement
    WHERE status IS NULL OR status NOT IN ('entered-in-error', 'not-taken', 'intended')
)
SELECT s.usubjid, d.name AS drug, d.rxnorm, d.drug_class, d.platinum, d.maintenance_capable,
       g.kind,
       TRY_CAST(substr(g.started, 1, 10) AS DATE) AS started_on,
       TRY_CAST(substr(g.ended, 1, 10) AS DATE) AS ended_on,
       g.dated_by,
       g.site_id, g.source_type, g.id AS source_id
FROM given g
JOIN core_stage.resource_drug rd
  ON rd.site_id = g.site_id AND rd.resource_type = g.source_type AND rd.id = g.id
JOIN terminology.drugs d ON d.rxnorm = rd.rxnorm
JOIN core_stage.resource_subject s
  ON s.site_id = g.site_id AND s.resource_type = g.source_type AND s.id = g.id
WHERE g.started IS NOT NULL;
