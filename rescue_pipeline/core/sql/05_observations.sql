-- Observation-based tables: surgeries (with residual disease), resectability, screening
-- findings, disease statuses and tumour assessments.

-- An Observation counts when final, amended or corrected (rule book §1); any other status
-- (preliminary, registered, cancelled, unknown, or none) is left out and counted by it.
INSERT INTO core_stage.excluded
SELECT site_id, 'Observation', id, coalesce(status, 'no_status') FROM flat.observation
WHERE status IS NULL OR status NOT IN ('final', 'amended', 'corrected', 'entered-in-error');

CREATE OR REPLACE TABLE core_stage.obs AS
SELECT o.*, rc.concept, a.answer, s.usubjid,
       TRY_CAST(substr(coalesce(o.effective, o.effective_start), 1, 10) AS DATE) AS observed_on
FROM flat.observation o
JOIN core_stage.resource_concept rc
  ON rc.site_id = o.site_id AND rc.resource_type = 'Observation' AND rc.id = o.id
JOIN core_stage.resource_subject s
  ON s.site_id = o.site_id AND s.resource_type = 'Observation' AND s.id = o.id
LEFT JOIN core_stage.observation_answer a ON a.site_id = o.site_id AND a.id = o.id
WHERE o.status IN ('final', 'amended', 'corrected');

INSERT INTO core.surgeries BY NAME
WITH residual AS (
    SELECT site_id, part_of_procedure, answer, id,
           row_number() OVER (PARTITION BY site_id, part_of_procedure ORDER BY observed_on DESC, id) AS pick
    FROM core_stage.obs WHERE concept = 'residual_disease' AND part_of_procedure IS NOT NULL
)
SELECT s.usubjid,
       replace(rc.concept, '_cytoreductive_surgery', '') AS surgery_type,
       TRY_CAST(substr(coalesce(p.performed, p.performed_start), 1, 10) AS DATE) AS performed_on,
       CASE WHEN r.answer IN ('R0', 'R1', 'R2') THEN r.answer ELSE 'not_recorded' END AS residual_disease,
       r.id AS residual_source_id,
       p.site_id, 'Procedure' AS source_type, p.id AS source_id
FROM flat.procedure p
JOIN core_stage.resource_concept rc
  ON rc.site_id = p.site_id AND rc.resource_type = 'Procedure' AND rc.id = p.id
JOIN core_stage.resource_subject s
  ON s.site_id = p.site_id AND s.resource_type = 'Procedure' AND s.id = p.id
LEFT JOIN residual r ON r.site_id = p.site_id AND r.part_of_procedure = p.id AND r.pick = 1
WHERE rc.concept LIKE '%_cytoreductive_surgery'
  AND (p.status IS NULL OR p.status NOT IN ('entered-in-error', 'not-done'));

INSERT INTO core.resectability BY NAME
SELECT usubjid, observed_on AS judged_on, answer AS judgement,
       site_id, 'Observation' AS source_type, id AS source_id
FROM core_stage.obs WHERE concept = 'resectability';

INSERT INTO core.screening_findings BY NAME
SELECT usubjid,
       CASE concept WHEN 'interfering_malignancy' THEN 'interfering_malignancy'
                    ELSE 'comorbidity_precluding_surgery' END AS finding,
       value_boolean AS present, observed_on AS recorded_on,
       site_id, 'Observation' AS source_type, id AS source_id
FROM core_stage.obs WHERE concept IN ('interfering_malignancy', 'comorbidity_precluding_surgery');

INSERT INTO core.disease_statuses BY NAME
SELECT usubjid, observed_on AS assessed_on, answer AS status,
       coalesce(evidence_imaging, false) AS imaging,
       site_id, 'Observation' AS source_type, id AS source_id
FROM core_stage.obs
WHERE concept = 'disease_status'
  AND answer IN ('ned', 'partial_remission', 'improved', 'stable', 'worsened', 'undetermined',
                 'distant_metastasis');

INSERT INTO core.tumour_assessments BY NAME
SELECT usubjid, observed_on AS assessed_on, answer AS response, 'recist' AS basis,
       site_id, 'Observation' AS source_type, id AS source_id
FROM core_stage.obs
WHERE concept = 'recist_response' AND answer IN ('CR', 'PR', 'SD', 'PD', 'NE')
UNION ALL
SELECT d.usubjid, d.assessed_on, m.response, 'imaging_disease_status',
       d.site_id, d.source_type, d.source_id
FROM core.disease_statuses d JOIN terminology.status_as_response m ON m.status = d.status
WHERE d.imaging;

-- Secondary cancers of trial subjects with a full onset date (else the recorded date): read by
-- both the lines of therapy (a recurrence ends the line in progress) and the recurrences.
CREATE OR REPLACE TABLE core_stage.secondary_onsets AS
SELECT s.usubjid, c.site_id, c.id AS source_id,
       TRY_CAST(substr(coalesce(c.onset, c.recorded), 1, 10) AS DATE) AS onset_on
FROM flat.condition c
JOIN core_stage.resource_concept rc
  ON rc.site_id = c.site_id AND rc.resource_type = 'Condition' AND rc.id = c.id
JOIN core_stage.resource_subject s
  ON s.site_id = c.site_id AND s.resource_type = 'Condition' AND s.id = c.id
WHERE rc.concept = 'secondary_malignancy'
  AND c.verification IS DISTINCT FROM 'entered-in-error'
  AND TRY_CAST(substr(coalesce(c.onset, c.recorded), 1, 10) AS DATE) IS NOT NULL;
