-- Staging: resolve every coding to a concept (through the site's concept map), once.
-- Codes of hierarchical systems (ICD-10, ICD-10-CM) match a listed root when the root is one of
-- their prefixes (rule book §1, codes with their descendants): each distinct code is normalised
-- (upper case, trimmed, no dot), its prefixes of three or more characters are generated, and the
-- prefixes are equi-joined to terminology.concept_roots; the longest matching root wins. Other
-- systems join terminology.concept_codes exactly. A drug code is an RxNorm ingredient, or a
-- product (SCD/SBD) read as its ingredient. contained_id: the contained Medication a coding
-- belongs to (null for the resource's own codings).
CREATE OR REPLACE TABLE core_stage.codings AS
WITH raw_codes AS (
    SELECT site_id, 'Observation' AS resource_type, 'code' AS element, id, system, code, display, NULL::VARCHAR AS contained_id FROM flat.observation_code
    UNION ALL SELECT site_id, 'Condition', 'code', id, system, code, display, NULL FROM flat.condition_code
    UNION ALL SELECT site_id, 'Procedure', 'code', id, system, code, display, NULL FROM flat.procedure_code
    UNION ALL SELECT site_id, 'MedicationAdministration', 'medication', id, system, code, display, NULL FROM flat.medication_administration_code
    UNION ALL SELECT site_id, 'MedicationRequest', 'medication', id, system, code, display, NULL FROM flat.medication_request_code
    UNION ALL SELECT site_id, 'MedicationStatement', 'medication', id, system, code, display, NULL FROM flat.medication_statement_code
    UNION ALL SELECT site_id, 'Medication', 'code', id, system, code, display, NULL FROM flat.medication_code
    UNION ALL SELECT site_id, 'MedicationAdministration', 'medication', id, system, code, display, contained_id FROM flat.medication_administration_contained_code
    UNION ALL SELECT site_id, 'MedicationRequest', 'medication', id, system, code, display, contained_id FROM flat.medication_request_contained_code
    UNION ALL SELECT site_id, 'MedicationStatement', 'medication', id, system, code, display, contained_id FROM flat.medication_statement_contained_code
),
mapped AS (
    SELECT r.*, coalesce(m.target_system, r.system) AS std_system, coalesce(m.target_code, r.code) AS std_code
    FROM raw_codes r
    LEFT JOIN terminology.site_concept_map m
      ON m.site_id = r.site_id AND m.system = r.system AND m.code = r.code
),
hierarchical AS (
    SELECT DISTINCT m.std_system, m.std_code, h.family,
           replace(upper(trim(m.std_code)), '.', '') AS code_key
    FROM mapped m JOIN terminology.hierarchical_systems h ON h.system = m.std_system
),
prefixes AS (
    SELECT std_system, std_code, family, left(code_key, n) AS prefix, n
    FROM (SELECT *, unnest(generate_series(3, length(code_key))) AS n FROM hierarchical)
),
by_root AS (
    SELECT p.std_system, p.std_code, arg_max(r.concept, (p.n, r.concept)) AS concept
    FROM prefixes p JOIN terminology.concept_roots r ON r.family = p.family AND r.root = p.prefix
    GROUP BY ALL
)
SELECT m.*, coalesce(c.concept, h.concept) AS concept, coalesce(d.rxnorm, p.rxnorm) AS rxnorm
FROM mapped m
LEFT JOIN terminology.concept_codes c ON c.system = m.std_system AND c.code = m.std_code
LEFT JOIN by_root h ON h.std_system = m.std_system AND h.std_code = m.std_code
LEFT JOIN terminology.drugs d ON d.system = m.std_system AND d.rxnorm = m.std_code
LEFT JOIN terminology.drug_products p ON p.system = m.std_system AND p.code = m.std_code;

-- One concept per resource (a resource coded twice, e.g. local + LOINC, resolves once).
-- A Condition claiming an mCODE cancer-condition profile is primary or secondary by that
-- profile: SNOMED 128462008 also codes "primary cancer, site unspecified", and secondary
-- conditions are often coded with a child of it (94225005 brain metastases). A primary with no
-- qualifying code is primary_other when a standard diagnosis code (ICD-10, ICD-10-CM, SNOMED CT)
-- of it matched nothing (a recorded, non-qualifying primary, rule book §1), else
-- primary_cancer_unspecified (site-local codes only, or a recognised concept that names no site).
CREATE OR REPLACE TABLE core_stage.resource_concept AS
WITH coded AS (
    SELECT site_id, resource_type, id, min(concept) AS concept
    FROM core_stage.codings WHERE concept IS NOT NULL GROUP BY ALL
),
standard_unmatched AS (
    SELECT DISTINCT c.site_id, c.resource_type, c.id
    FROM core_stage.codings c
    JOIN terminology.standard_diagnosis_systems s ON s.system = c.std_system
    WHERE c.resource_type = 'Condition' AND c.concept IS NULL
),
profiled AS (
    SELECT site_id, 'Condition' AS resource_type, id,
           CASE WHEN mcode_profile LIKE '%secondary-cancer-condition' THEN 'secondary_malignancy'
                ELSE 'primary_cancer_unspecified' END AS profile_concept
    FROM flat.condition WHERE mcode_profile IS NOT NULL
),
joined AS (
    SELECT site_id, resource_type, id, c.concept, p.profile_concept
    FROM coded c FULL JOIN profiled p USING (site_id, resource_type, id)
)
SELECT j.site_id, j.resource_type, j.id,
       CASE WHEN j.profile_concept = 'secondary_malignancy' THEN 'secondary_malignancy'
            WHEN j.profile_concept IS NOT NULL AND j.concept = 'secondary_malignancy'
            THEN 'primary_cancer_unspecified'
            WHEN j.profile_concept IS NOT NULL AND j.concept IS NULL AND s.id IS NOT NULL
            THEN 'primary_other'
            ELSE coalesce(j.concept, j.profile_concept) END AS concept
FROM joined j
LEFT JOIN standard_unmatched s
  ON s.site_id = j.site_id AND s.resource_type = j.resource_type AND s.id = j.id;

-- One drug per resource: its own codings, else the Medication its medicationReference names,
-- a Medication resource ('Medication/<id>') or a contained one ('#<id>', rule book §1, doses).
CREATE OR REPLACE TABLE core_stage.medication_references AS
WITH refs AS (
    SELECT site_id, 'MedicationAdministration' AS resource_type, id, medication_id, medication_reference
    FROM flat.medication_administration WHERE medication_reference IS NOT NULL
    UNION ALL SELECT site_id, 'MedicationRequest', id, medication_id, medication_reference
    FROM flat.medication_request WHERE medication_reference IS NOT NULL
    UNION ALL SELECT site_id, 'MedicationStatement', id, medication_id, medication_reference
    FROM flat.medication_statement WHERE medication_reference IS NOT NULL
),
medications AS (  -- coded Medication resources and contained Medications
    SELECT site_id, resource_type, id, contained_id, true AS coded, min(rxnorm) AS rxnorm
    FROM core_stage.codings
    WHERE resource_type = 'Medication' OR contained_id IS NOT NULL
    GROUP BY ALL
)
SELECT r.site_id, r.resource_type, r.id, r.medication_reference,
       coalesce(m.rxnorm, c.rxnorm) AS rxnorm,
       coalesce(m.coded, c.coded, false) AS resolved
FROM (SELECT *, CASE WHEN starts_with(medication_reference, '#')
                     THEN substr(medication_reference, 2) END AS contained_ref
      FROM refs) r
LEFT JOIN medications m
  ON m.site_id = r.site_id AND m.resource_type = 'Medication' AND m.id = r.medication_id
LEFT JOIN medications c
  ON c.site_id = r.site_id AND c.resource_type = r.resource_type AND c.id = r.id
 AND c.contained_id = r.contained_ref;

CREATE OR REPLACE TABLE core_stage.resource_drug AS
SELECT site_id, resource_type, id, min(rxnorm) AS rxnorm
FROM (
    SELECT site_id, resource_type, id, rxnorm FROM core_stage.codings
    WHERE rxnorm IS NOT NULL AND contained_id IS NULL AND resource_type <> 'Medication'
    UNION ALL
    SELECT site_id, resource_type, id, rxnorm FROM core_stage.medication_references
    WHERE rxnorm IS NOT NULL
)
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

-- Resources left out of core: entered in error, or not done; and drug resources whose
-- medicationReference resolves to no coded Medication (no such Medication resource at the site,
-- no such contained id): reason unresolved_reference (rule book §1, nothing silent).
CREATE OR REPLACE TABLE core_stage.excluded AS
WITH by_status AS (
    SELECT site_id, 'Observation' AS resource_type, id, status FROM flat.observation WHERE status = 'entered-in-error'
    UNION ALL SELECT site_id, 'Procedure', id, status FROM flat.procedure WHERE status IN ('entered-in-error', 'not-done')
    UNION ALL SELECT site_id, 'MedicationAdministration', id, status FROM flat.medication_administration WHERE status IN ('entered-in-error', 'not-done')
    UNION ALL SELECT site_id, 'MedicationRequest', id, status FROM flat.medication_request WHERE status IN ('entered-in-error', 'cancelled')
    UNION ALL SELECT site_id, 'MedicationStatement', id, status FROM flat.medication_statement WHERE status IN ('entered-in-error', 'not-taken')
    UNION ALL SELECT site_id, 'Condition', id, verification FROM flat.condition WHERE verification = 'entered-in-error'
    UNION ALL SELECT site_id, 'ResearchSubject', id, status FROM flat.research_subject WHERE status = 'entered-in-error'
    UNION ALL SELECT site_id, 'Consent', id, status FROM flat.consent WHERE status = 'entered-in-error'
)
SELECT * FROM by_status
UNION ALL
SELECT r.site_id, r.resource_type, r.id, 'unresolved_reference'
FROM core_stage.medication_references r
ANTI JOIN by_status s USING (site_id, resource_type, id)
WHERE NOT r.resolved;
