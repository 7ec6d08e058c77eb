-- core.resource_accounting: every current resource in raw, per site and type, either used by a
-- core table or counted with the first reason that keeps it out (rule book §1 "Nothing silent").
-- `used` is read back from the core tables' own source ids, independently of the reasons. The
-- accounting check compares the sum per site and type with raw's own count (a join that fans
-- out, or a stale table, shows) and wants no `unaccounted` subject, patient or consent.
CREATE OR REPLACE TEMP TABLE accounting_used AS
SELECT DISTINCT site_id, resource_type, id FROM (
    SELECT site_id, source_type AS resource_type, source_id AS id FROM core.subjects
    UNION ALL SELECT site_id, source_type, source_id FROM core.diagnoses
    UNION ALL SELECT site_id, source_type, source_id FROM core.drug_administrations
    UNION ALL SELECT site_id, source_type, source_id FROM core.ca125_measurements
    UNION ALL SELECT site_id, source_type, source_id FROM core.surgeries
    UNION ALL SELECT site_id, 'Observation', residual_source_id FROM core.surgeries
    UNION ALL SELECT site_id, source_type, source_id FROM core.resectability
    UNION ALL SELECT site_id, source_type, source_id FROM core.screening_findings
    UNION ALL SELECT site_id, source_type, source_id FROM core.disease_statuses
    UNION ALL SELECT site_id, source_type, source_id FROM core.tumour_assessments
    UNION ALL SELECT site_id, source_type, source_id FROM core.recurrences
    UNION ALL SELECT site_id, source_type, source_id FROM core.progression_events
    UNION ALL SELECT site_id, source_type, source_id FROM core.partial_dates
    -- a subject's Patient (sex, birth, death) and her consents (consent date, data transfer)
    UNION ALL SELECT site_id, 'Patient', patient_id FROM core_stage.subject_of_patient
    UNION ALL
    SELECT c.site_id, 'Consent', c.id FROM flat.consent c
    JOIN core_stage.resource_subject s
      ON s.site_id = c.site_id AND s.resource_type = 'Consent' AND s.id = c.id
    WHERE c.status IS DISTINCT FROM 'entered-in-error'
    -- Medications lend their code to the doses that reference them
    UNION ALL
    SELECT m.site_id, 'Medication', m.medication_id
    FROM (
        SELECT site_id, 'MedicationAdministration' AS source_type, id, medication_id
        FROM flat.medication_administration
        UNION ALL SELECT site_id, 'MedicationRequest', id, medication_id FROM flat.medication_request
        UNION ALL SELECT site_id, 'MedicationStatement', id, medication_id FROM flat.medication_statement
    ) m
    JOIN core.drug_administrations d
      ON d.site_id = m.site_id AND d.source_type = m.source_type AND d.source_id = m.id
    -- FIGO stage observations feed core.diagnoses.stage
    UNION ALL
    SELECT o.site_id, 'Observation', o.id FROM flat.observation o
    JOIN core_stage.resource_concept rc
      ON rc.site_id = o.site_id AND rc.resource_type = 'Observation' AND rc.id = o.id
    JOIN core_stage.resource_subject s
      ON s.site_id = o.site_id AND s.resource_type = 'Observation' AND s.id = o.id
    WHERE rc.concept = 'stage_group' AND o.status IS DISTINCT FROM 'entered-in-error'
) WHERE id IS NOT NULL;

INSERT INTO core.resource_accounting BY NAME
WITH current AS (  -- raw.fhir_resources's keys, as the flat views' step stored them
    SELECT site_id, resource_type, resource_id AS id FROM core_stage.current
),
excluded AS (
    SELECT site_id, resource_type, id, min(status) AS reason FROM core_stage.excluded GROUP BY ALL
),
recognised AS (
    SELECT site_id, resource_type, id FROM core_stage.resource_concept
    UNION SELECT site_id, resource_type, id FROM core_stage.resource_drug
),
coded AS (
    SELECT DISTINCT site_id, resource_type, id FROM core_stage.codings
),
other_study AS (
    SELECT site_id, id FROM flat.research_subject
    WHERE study IS NOT NULL AND study <> getvariable('study_nct')
),
classified AS (
    SELECT c.site_id, c.resource_type,
           CASE
               WHEN u.id IS NOT NULL THEN 'used'
               WHEN x.reason IS NOT NULL THEN x.reason
               WHEN o.id IS NOT NULL THEN 'other_study'
               WHEN c.resource_type NOT IN ('Patient', 'ResearchSubject', 'Consent', 'Condition',
                                            'Observation', 'Procedure', 'Medication',
                                            'MedicationAdministration', 'MedicationRequest',
                                            'MedicationStatement')
                    THEN 'type_not_read'
               WHEN c.resource_type <> 'Medication' AND s.id IS NULL
                    THEN 'not_a_trial_subject'
               WHEN c.resource_type = 'Medication' AND k.id IS NOT NULL THEN 'medication_not_given'
               WHEN c.resource_type IN ('Patient', 'ResearchSubject', 'Consent') THEN 'unaccounted'
               WHEN k.id IS NULL THEN 'no_code'
               WHEN r.id IS NULL THEN 'unmapped_code'
               WHEN NOT p.dated THEN 'no_full_date'
               ELSE 'recognised_not_used'
           END AS reason
    FROM current c
    LEFT JOIN accounting_used u USING (site_id, resource_type, id)
    LEFT JOIN excluded x USING (site_id, resource_type, id)
    LEFT JOIN other_study o ON c.resource_type = 'ResearchSubject' AND o.site_id = c.site_id AND o.id = c.id
    LEFT JOIN core_stage.resource_patient p USING (site_id, resource_type, id)
    LEFT JOIN core_stage.resource_subject s USING (site_id, resource_type, id)
    LEFT JOIN coded k USING (site_id, resource_type, id)
    LEFT JOIN recognised r USING (site_id, resource_type, id)
)
SELECT site_id, resource_type, reason, count(*) AS resources FROM classified GROUP BY ALL;

DROP TABLE accounting_used;
