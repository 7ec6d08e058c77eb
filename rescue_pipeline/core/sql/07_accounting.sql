-- core.unmapped_codes: every code that matched nothing, per site, system and code, whatever else
-- recognised its resource (rule book §1), with how many of its resources were recognised
-- otherwise (another code, the mCODE profile, the referenced or contained Medication).
INSERT INTO core.unmapped_codes BY NAME
WITH recognised AS (
    SELECT site_id, resource_type, id FROM core_stage.resource_concept
    UNION SELECT site_id, resource_type, id FROM core_stage.resource_drug
    UNION SELECT site_id, resource_type, id FROM core_stage.codings WHERE rxnorm IS NOT NULL
),
unmatched AS (
    SELECT DISTINCT site_id, resource_type, element, system, code, display, id
    FROM core_stage.codings WHERE concept IS NULL AND rxnorm IS NULL
)
SELECT u.site_id, u.resource_type, u.element, u.system, u.code, min(u.display) AS display,
       count(DISTINCT u.id) AS resources,
       count(DISTINCT u.id) FILTER (WHERE r.id IS NOT NULL) AS resources_recognised_otherwise
FROM unmatched u
LEFT JOIN recognised r
  ON r.site_id = u.site_id AND r.resource_type = u.resource_type AND r.id = u.id
GROUP BY u.site_id, u.resource_type, u.element, u.system, u.code;

-- core.excluded_resources: kept in raw, left out of core.
INSERT INTO core.excluded_resources BY NAME
SELECT site_id, resource_type, status AS reason, count(*) AS resources
FROM core_stage.excluded GROUP BY ALL;

-- core.excluded_resources, reason deleted: resources landed and then deleted at the site
-- (raw.deletions), with no version newer than the deletion: raw.fhir_resources leaves them out.
INSERT INTO core.excluded_resources BY NAME
SELECT v.site_id, v.resource_type, 'deleted' AS reason, count(DISTINCT v.resource_id) AS resources
FROM raw.fhir_resource_versions v
SEMI JOIN raw.deletions d USING (site_id, resource_type, resource_id)
ANTI JOIN core_stage.current r USING (site_id, resource_type, resource_id)
GROUP BY ALL;
