-- core.unmapped_codes: resources with no recognised code, per site and code.
INSERT INTO core.unmapped_codes BY NAME
WITH recognised AS (
    SELECT site_id, resource_type, id FROM core_stage.resource_concept
    UNION SELECT site_id, resource_type, id FROM core_stage.resource_drug
    UNION SELECT site_id, resource_type, id FROM core_stage.codings WHERE rxnorm IS NOT NULL
)
SELECT c.site_id, c.resource_type, c.element, c.system, c.code, min(c.display) AS display,
       count(DISTINCT c.id) AS resources
FROM core_stage.codings c
ANTI JOIN recognised r USING (site_id, resource_type, id)
GROUP BY ALL;

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
ANTI JOIN raw.fhir_resources r USING (site_id, resource_type, resource_id)
GROUP BY ALL;
