-- Staging: resolve every coding to a concept (through the site's concept map), once.
CREATE OR REPLACE TABLE core_stage.codings AS
WITH raw_codes AS (
    SELECT site_id, 'Observation' AS resource_type, 'code' AS element, id, system, code, display FROM flat.observation_code
    UNION ALL SELECT site_id, 'Condition', 'code', id, system, code, display FROM flat.condition_code
    UNION ALL SELECT site_id, 'Procedure', 'code', id, system, code, display FROM flat.procedure_code
    UNION ALL SELECT site_id, 'MedicationAdministration', 'medication', id, system, code, display FROM flat.medication_administration_code
    UNION ALL SELECT site_id, 'MedicationRequest', 'medication', id, system, code, display FROM flat.medication_request_code
    UNION ALL SELECT site_id, 'MedicationStatement', 'medication', id, system, code, display FROM flat.medication_statement_code
    UNION ALL SELECT site_id, 'Medication', 'code', id, system, code, display FROM flat.medication_code
),
mapped AS (
    SELECT r.*, coalesce(m.target_system, r.system) AS std_system, coalesce(m.target_code, r.code) AS std_code
    FROM raw_codes r
    LEFT JOIN terminology.site_concept_map m
      ON m.site_id = r.site_id AND m.system = r.system AND m.code = r.code
)
SELECT m.*, c.concept, d.rxnorm
FROM mapped m
LEFT JOIN terminology.concept_codes c ON c.system = m.std_system AND c.code = m.std_code
LEFT JOIN terminology.drugs d ON d.system = m.std_system AND d.rxnorm = m.std_code;

-- One concept per resource (a resource coded twice, e.g. local + LOINC, resolves once).
-- A Condition claiming an mCODE cancer-condition profile is primary or secondary by that
-- profile: SNOMED 128462008 also codes "primary cancer, site unspecified", and secondary
-- conditions are often coded with a child of it (94225005 brain metastases).
CREATE OR REPLACE TABLE core_stage.resource_concept AS
WITH coded AS (
    SELECT site_id, resource_type, id, min(concept) AS concept
    FROM core_stage.codings WHERE concept IS NOT NULL GROUP BY ALL
),
profiled AS (
    SELECT site_id, 'Condition' AS resource_type, id,
           CASE WHEN mcode_profile LIKE '%secondary-cancer-condition' THEN 'secondary_malignancy'
                ELSE 'primary_cancer_unspecified' END AS profile_concept
    FROM flat.condition WHERE mcode_profile IS NOT NULL
)
SELECT site_id, resource_type, id,
       CASE WHEN p.profile_concept = 'secondary_malignancy' THEN 'secondary_malignancy'
            WHEN p.profile_concept IS NOT NULL AND c.concept = 'secondary_malignancy'
            THEN 'primary_cancer_unspecified'
            ELSE c.concept END AS concept
FROM coded c FULL JOIN profiled p USING (site_id, resource_type, id)
WHERE coalesce(c.concept, p.profile_concept) IS NOT NULL;

-- One drug per resource; Medication resources lend theirs to the references.
CREATE OR REPLACE TABLE core_stage.resource_drug AS
WITH direct AS (
    SELECT site_id, resource_type, id, min(rxnorm) AS rxnorm
    FROM core_stage.codings WHERE rxnorm IS NOT NULL GROUP BY ALL
),
referenced AS (
    SELECT a.site_id, 'MedicationAdministration' AS resource_type, a.id, d.rxnorm
    FROM flat.medication_administration a JOIN direct d
      ON d.site_id = a.site_id AND d.resource_type = 'Medication' AND d.id = a.medication_id
    UNION ALL
    SELECT a.site_id, 'MedicationRequest', a.id, d.rxnorm
    FROM flat.medication_request a JOIN direct d
      ON d.site_id = a.site_id AND d.resource_type = 'Medication' AND d.id = a.medication_id
    UNION ALL
    SELECT a.site_id, 'MedicationStatement', a.id, d.rxnorm
    FROM flat.medication_statement a JOIN direct d
      ON d.site_id = a.site_id AND d.resource_type = 'Medication' AND d.id = a.medication_id
)
SELECT site_id, resource_type, id, min(rxnorm) AS rxnorm
FROM (SELECT * FROM direct WHERE resource_type <> 'Medication' UNION ALL SELECT * FROM referenced)
GROUP BY ALL;

-- Coded answers of observations, and the RECIST texts sites send instead of codes.
CREATE OR REPLACE TABLE core_stage.observation_answer AS
WITH coded AS (
    SELECT v.site_id, v.id, min(a.answer) AS answer
    FROM flat.observation_value_code v
    LEFT JOIN terminology.site_concept_map m
      ON m.site_id = v.site_id AND m.system = v.system AND m.code = v.code
    JOIN terminology.answer_codes a
      ON a.system = coalesce(m.target_system, v.system) AND a.code = coalesce(m.target_code, v.code)
    GROUP BY ALL
)
SELECT o.site_id, o.id,
       coalesce(c.answer, CASE WHEN upper(trim(o.value_text)) IN ('CR', 'PR', 'SD', 'PD', 'NE')
                               THEN upper(trim(o.value_text)) END) AS answer
FROM flat.observation o LEFT JOIN coded c USING (site_id, id);

-- Resources left out of core: entered in error, or not done.
CREATE OR REPLACE TABLE core_stage.excluded AS
SELECT site_id, 'Observation' AS resource_type, id, status FROM flat.observation WHERE status = 'entered-in-error'
UNION ALL SELECT site_id, 'Procedure', id, status FROM flat.procedure WHERE status IN ('entered-in-error', 'not-done')
UNION ALL SELECT site_id, 'MedicationAdministration', id, status FROM flat.medication_administration WHERE status IN ('entered-in-error', 'not-done')
UNION ALL SELECT site_id, 'MedicationRequest', id, status FROM flat.medication_request WHERE status IN ('entered-in-error', 'cancelled')
UNION ALL SELECT site_id, 'MedicationStatement', id, status FROM flat.medication_statement WHERE status IN ('entered-in-error', 'not-taken')
UNION ALL SELECT site_id, 'Condition', id, verification FROM flat.condition WHERE verification = 'entered-in-error'
UNION ALL SELECT site_id, 'ResearchSubject', id, status FROM flat.research_subject WHERE status = 'entered-in-error'
UNION ALL SELECT site_id, 'Consent', id, status FROM flat.consent WHERE status = 'entered-in-error';
