-- core.subjects: one row per ResearchSubject of the trial (usubjid computed in Python first,
-- into core_stage.usubjids: identifier rule or keyed HMAC, see core/pseudonym.py).
INSERT INTO core.subjects BY NAME
WITH rs AS (
    SELECT r.*, u.usubjid
    FROM flat.research_subject r
    JOIN core_stage.usubjids u ON u.site_id = r.site_id AND u.research_subject_id = r.id
    WHERE r.status IS DISTINCT FROM 'entered-in-error'
      AND (r.study IS NULL OR r.study = getvariable('study_nct'))
),
subject_consent AS (  -- her consents: the one she points to, and her patient's research consents
    -- (two equi-joins: one join on "this id OR that patient" can only be a per-site loop)
    SELECT rs.site_id, rs.id AS rs_id, c.id, c.id = rs.consent_id AS named, c.date_time,
           c.status, c.provision_type, c.disclose
    FROM rs JOIN flat.consent c ON c.site_id = rs.site_id AND c.id = rs.consent_id
    UNION
    SELECT rs.site_id, rs.id AS rs_id, c.id, c.id IS NOT DISTINCT FROM rs.consent_id, c.date_time,
           c.status, c.provision_type, c.disclose
    FROM rs JOIN flat.consent c ON c.site_id = rs.site_id AND c.patient_id = rs.patient_id
),
consent AS (  -- the consent the subject points to, else the patient's latest research consent
    SELECT site_id, rs_id, date_time, status, provision_type, disclose,
           row_number() OVER (PARTITION BY site_id, rs_id
                              ORDER BY named DESC, date_time DESC, id) AS pick
    FROM subject_consent
    WHERE status IS DISTINCT FROM 'entered-in-error'
),
withdrawn AS (  -- consent withdrawn: the subject's latest research consent is inactive
    SELECT site_id, rs_id FROM (
        SELECT site_id, rs_id, status,
               row_number() OVER (PARTITION BY site_id, rs_id ORDER BY date_time DESC, id) AS latest
        FROM subject_consent
        WHERE status IS DISTINCT FROM 'entered-in-error'
    ) WHERE latest = 1 AND status = 'inactive'
),
base AS (
    SELECT rs.usubjid, rs.site_id, rs.id AS source_id, rs.patient_id, rs.status,
           upper(substr(trim(rs.assigned_arm), 1, 1)) AS arm_letter,
           TRY_CAST(substr(rs.period_start, 1, 10) AS DATE) AS period_start,
           TRY_CAST(substr(rs.period_end, 1, 10) AS DATE) AS period_end,
           p.gender, p.race_omb, p.birth_date, TRY_CAST(substr(p.birth_date, 1, 10) AS DATE) AS birth_day,
           TRY_CAST(substr(p.deceased_on, 1, 10) AS DATE) AS died_on,
           TRY_CAST(substr(c.date_time, 1, 10) AS DATE) AS consented_on,
           c.status AS consent_status, c.provision_type, c.disclose
    FROM rs
    LEFT JOIN flat.patient p ON p.site_id = rs.site_id AND p.id = rs.patient_id
    LEFT JOIN consent c ON c.site_id = rs.site_id AND c.rs_id = rs.id AND c.pick = 1
    ANTI JOIN withdrawn w ON w.site_id = rs.site_id AND w.rs_id = rs.id
)
SELECT usubjid, site_id, gender AS sex,
       -- CDISC RACE from the US Core race extension's OMB categories (urn:oid:2.16.840.1.113883.6.238);
       -- two or more categories: MULTIPLE; v3 NullFlavor UNK: UNKNOWN, ASKU: NOT REPORTED
       CASE WHEN len(list_distinct(list_filter(race_omb, lambda c: c IN
                     ('1002-5', '2028-9', '2054-5', '2076-8', '2106-3')))) > 1 THEN 'MULTIPLE'
            WHEN list_contains(race_omb, '1002-5') THEN 'AMERICAN INDIAN OR ALASKA NATIVE'
            WHEN list_contains(race_omb, '2028-9') THEN 'ASIAN'
            WHEN list_contains(race_omb, '2054-5') THEN 'BLACK OR AFRICAN AMERICAN'
            WHEN list_contains(race_omb, '2076-8') THEN 'NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER'
            WHEN list_contains(race_omb, '2106-3') THEN 'WHITE'
            WHEN list_contains(race_omb, 'UNK') THEN 'UNKNOWN'
            WHEN list_contains(race_omb, 'ASKU') THEN 'NOT REPORTED'
       END AS race,
       TRY_CAST(substr(birth_date, 1, 4) AS INTEGER) AS birth_year,
       -- ages (age_at_consent, age_min, age_max, age_on, age_basis) are set by the age rule
       -- (rules/dates.py) right after this statement: a partial birth date needs it
       CASE WHEN arm_letter IN ('A', 'B') THEN arm_letter END AS arm,
       CASE WHEN arm_letter IN ('A', 'B') THEN period_start END AS randomised_on,
       CASE WHEN arm_letter IN ('A', 'B') THEN NULL ELSE period_end END AS screening_ended_on,
       CASE WHEN arm_letter IN ('A', 'B') THEN period_end END AS study_ended_on,
       consented_on,
       CASE WHEN consent_status IS NULL THEN NULL
            ELSE consent_status = 'active' AND provision_type = 'permit' AND coalesce(disclose, false)
       END AS consent_data_transfer,
       died_on, status AS subject_status,
       'ResearchSubject' AS source_type, source_id
FROM base;

-- A subject who withdrew her consent leaves core (and so analysis and exports) from this build
-- on; her resources stay in raw, and she is counted in core.excluded_resources.
INSERT INTO core_stage.excluded
SELECT r.site_id, 'ResearchSubject', r.id, 'consent_withdrawn'
FROM flat.research_subject r
JOIN core_stage.usubjids u ON u.site_id = r.site_id AND u.research_subject_id = r.id
WHERE r.status IS DISTINCT FROM 'entered-in-error'
  AND (r.study IS NULL OR r.study = getvariable('study_nct'))
  AND u.usubjid NOT IN (SELECT usubjid FROM core.subjects);

-- Patient id -> usubjid. It stays in the working database's staging schema: a site's Patient
-- id can be its MRN, so no core table carries it.
CREATE OR REPLACE TABLE core_stage.subject_of_patient AS
SELECT r.site_id, r.patient_id, min(u.usubjid) AS usubjid
FROM flat.research_subject r
JOIN core_stage.usubjids u ON u.site_id = r.site_id AND u.research_subject_id = r.id
JOIN core.subjects s ON s.usubjid = u.usubjid
GROUP BY ALL;

-- Each resource's patient, and whether it has the full date core reads it by.
CREATE OR REPLACE TABLE core_stage.resource_patient AS
SELECT site_id, resource_type, id, patient_id,
       TRY_CAST(substr(day, 1, 10) AS DATE) IS NOT NULL AS dated
FROM (
    SELECT site_id, 'Observation' AS resource_type, id, patient_id,
           coalesce(effective, effective_start) AS day FROM flat.observation
    UNION ALL SELECT site_id, 'Condition', id, patient_id, coalesce(onset, recorded) FROM flat.condition
    UNION ALL SELECT site_id, 'Procedure', id, patient_id, coalesce(performed, performed_start) FROM flat.procedure
    UNION ALL SELECT site_id, 'MedicationAdministration', id, patient_id, coalesce(effective, effective_start) FROM flat.medication_administration
    UNION ALL SELECT site_id, 'MedicationRequest', id, patient_id, coalesce(start, authored) FROM flat.medication_request
    UNION ALL SELECT site_id, 'MedicationStatement', id, patient_id, coalesce(start, effective) FROM flat.medication_statement
    UNION ALL SELECT site_id, 'Consent', id, patient_id, date_time FROM flat.consent
    UNION ALL SELECT site_id, 'ResearchSubject', id, patient_id, NULL FROM flat.research_subject
    UNION ALL SELECT site_id, 'Patient', id, id, NULL FROM flat.patient
);

-- Resource -> usubjid, for every resource of a trial subject. The later statements join a
-- resource to its subject by the resource's own key (site_id, resource_type, id), as they join
-- it to its concept: every relation of a join then shares that key, so whichever order DuckDB
-- joins them in, no intermediate result can hold more rows than the resources. (Joining by
-- patient_id beside the resource key left a concept table and a subject table sharing only
-- site_id: a cross product per site whenever the optimiser joined those two first.) This
-- statement is the only join by patient_id, and it joins two relations.
CREATE OR REPLACE TABLE core_stage.resource_subject AS
SELECT r.site_id, r.resource_type, r.id, s.usubjid
FROM core_stage.resource_patient r
JOIN core_stage.subject_of_patient s ON s.site_id = r.site_id AND s.patient_id = r.patient_id;
