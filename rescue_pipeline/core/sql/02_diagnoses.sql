-- core.diagnoses: primary cancer conditions, histology classed by ICD-O-3 morphology. A primary
-- coded only with standard codes outside the qualifying hierarchies is kept with primary_site
-- other (a recorded, non-qualifying primary, rule book §1); primary_system / primary_code: the
-- standard code the site was read from.
INSERT INTO core.diagnoses BY NAME
WITH primary_condition AS (
    SELECT c.*, rc.concept, s.usubjid
    FROM flat.condition c
    JOIN core_stage.resource_concept rc
      ON rc.site_id = c.site_id AND rc.resource_type = 'Condition' AND rc.id = c.id
    JOIN core_stage.resource_subject s
      ON s.site_id = c.site_id AND s.resource_type = 'Condition' AND s.id = c.id
    WHERE rc.concept IN ('primary_ovary', 'primary_tube', 'primary_peritoneum', 'primary_other')
      AND c.verification IS DISTINCT FROM 'entered-in-error'
),
site_code AS (
    SELECT k.site_id, k.id, arg_min(k.std_system, (k.std_code, k.std_system)) AS primary_system,
           min(k.std_code) AS primary_code
    FROM core_stage.codings k
    JOIN core_stage.resource_concept rc
      ON rc.site_id = k.site_id AND rc.resource_type = k.resource_type AND rc.id = k.id
    LEFT JOIN terminology.standard_diagnosis_systems d ON d.system = k.std_system
    WHERE k.resource_type = 'Condition'
      AND (k.concept = rc.concept
           OR (rc.concept = 'primary_other' AND k.concept IS NULL AND d.system IS NOT NULL))
    GROUP BY ALL
),
stage AS (
    SELECT s.usubjid, f.stage,
           row_number() OVER (PARTITION BY s.usubjid ORDER BY o.effective, o.id) AS pick
    FROM flat.observation o
    JOIN core_stage.resource_concept rc
      ON rc.site_id = o.site_id AND rc.resource_type = 'Observation' AND rc.id = o.id
    JOIN core_stage.resource_subject s
      ON s.site_id = o.site_id AND s.resource_type = 'Observation' AND s.id = o.id
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
SELECT parsed.usubjid,
       CASE concept WHEN 'primary_ovary' THEN 'ovary' WHEN 'primary_tube' THEN 'fallopian_tube'
                    WHEN 'primary_peritoneum' THEN 'primary_peritoneal' ELSE 'other' END AS primary_site,
       k.primary_system, k.primary_code,
       histology_code, morphology_code AS morphology,
       CASE behaviour_code WHEN '3' THEN 'invasive' WHEN '1' THEN 'borderline'
                           WHEN '2' THEN 'in_situ' WHEN '0' THEN 'benign' END AS behaviour,
       CASE WHEN morphology_code IS NULL THEN NULL
            WHEN morphology_code BETWEEN getvariable('epithelial_low') AND getvariable('epithelial_high')
            THEN 'epithelial' ELSE 'non_epithelial' END AS histology_class,
       s.stage,
       TRY_CAST(substr(coalesce(onset, recorded), 1, 10) AS DATE) AS diagnosed_on,
       parsed.site_id, 'Condition' AS source_type, parsed.id AS source_id
FROM parsed
LEFT JOIN stage s ON s.usubjid = parsed.usubjid AND s.pick = 1
LEFT JOIN site_code k ON k.site_id = parsed.site_id AND k.id = parsed.id;
