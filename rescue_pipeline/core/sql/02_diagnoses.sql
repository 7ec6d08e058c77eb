-- core.diagnoses: primary cancer conditions, histology classed by ICD-O-3 morphology.
INSERT INTO core.diagnoses BY NAME
WITH primary_condition AS (
    SELECT c.*, rc.concept, s.usubjid
    FROM flat.condition c
    JOIN core_stage.resource_concept rc
      ON rc.site_id = c.site_id AND rc.resource_type = 'Condition' AND rc.id = c.id
    JOIN core_stage.subject_of_patient s ON s.site_id = c.site_id AND s.patient_id = c.patient_id
    WHERE rc.concept IN ('primary_ovary', 'primary_tube', 'primary_peritoneum')
      AND c.verification IS DISTINCT FROM 'entered-in-error'
),
stage AS (
    SELECT o.site_id, o.patient_id, f.stage,
           row_number() OVER (PARTITION BY o.site_id, o.patient_id ORDER BY o.effective) AS pick
    FROM flat.observation o
    JOIN core_stage.resource_concept rc
      ON rc.site_id = o.site_id AND rc.resource_type = 'Observation' AND rc.id = o.id
    JOIN flat.observation_value_code v ON v.site_id = o.site_id AND v.id = o.id
    JOIN terminology.figo_stage f ON f.code = v.code
    WHERE rc.concept = 'stage_group' AND o.status IS DISTINCT FROM 'entered-in-error'
),
parsed AS (
    SELECT p.*,
           TRY_CAST(split_part(p.histology_code, '/', 1) AS INTEGER) AS morphology_code,
           split_part(p.histology_code, '/', 2) AS behaviour_code
    FROM primary_condition p
)
SELECT usubjid,
       CASE concept WHEN 'primary_ovary' THEN 'ovary' WHEN 'primary_tube' THEN 'fallopian_tube'
                    ELSE 'primary_peritoneal' END AS primary_site,
       histology_code, morphology_code AS morphology,
       CASE behaviour_code WHEN '3' THEN 'invasive' WHEN '1' THEN 'borderline'
                           WHEN '2' THEN 'in_situ' WHEN '0' THEN 'benign' END AS behaviour,
       CASE WHEN morphology_code IS NULL THEN NULL
            WHEN morphology_code BETWEEN getvariable('epithelial_low') AND getvariable('epithelial_high')
            THEN 'epithelial' ELSE 'non_epithelial' END AS histology_class,
       s.stage,
       TRY_CAST(substr(coalesce(onset, recorded), 1, 10) AS DATE) AS diagnosed_on,
       parsed.site_id, 'Condition' AS source_type, id AS source_id
FROM parsed
LEFT JOIN stage s ON s.site_id = parsed.site_id AND s.patient_id = parsed.patient_id AND s.pick = 1;
