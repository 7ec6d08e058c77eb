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
consent AS (  -- the consent the subject points to, else the patient's latest research consent
    SELECT rs.site_id, rs.id AS rs_id, c.date_time, c.status, c.provision_type, c.disclose,
           row_number() OVER (PARTITION BY rs.site_id, rs.id
                              ORDER BY (c.id = rs.consent_id) DESC, c.date_time DESC, c.id) AS pick
    FROM rs JOIN flat.consent c
      ON c.site_id = rs.site_id AND (c.id = rs.consent_id OR c.patient_id = rs.patient_id)
    WHERE c.status IS DISTINCT FROM 'entered-in-error'
),
withdrawn AS (  -- consent withdrawn: the subject's latest research consent is inactive
    SELECT site_id, rs_id FROM (
        SELECT rs.site_id, rs.id AS rs_id, c.status,
               row_number() OVER (PARTITION BY rs.site_id, rs.id ORDER BY c.date_time DESC, c.id) AS latest
        FROM rs JOIN flat.consent c
          ON c.site_id = rs.site_id AND (c.id = rs.consent_id OR c.patient_id = rs.patient_id)
        WHERE c.status IS DISTINCT FROM 'entered-in-error'
    ) WHERE latest = 1 AND status = 'inactive'
),
base AS (
    SELECT rs.usubjid, rs.site_id, rs.id AS source_id, rs.patient_id, rs.status,
           upper(substr(trim(rs.assigned_arm), 1, 1)) AS arm_letter,
           TRY_CAST(substr(rs.period_start, 1, 10) AS DATE) AS period_start,
           TRY_CAST(substr(rs.period_end, 1, 10) AS DATE) AS period_end,
           p.gender, p.birth_date, TRY_CAST(substr(p.birth_date, 1, 10) AS DATE) AS birth_day,
           TRY_CAST(substr(p.deceased_on, 1, 10) AS DATE) AS died_on,
           TRY_CAST(substr(c.date_time, 1, 10) AS DATE) AS consented_on,
           c.status AS consent_status, c.provision_type, c.disclose
    FROM rs
    LEFT JOIN flat.patient p ON p.site_id = rs.site_id AND p.id = rs.patient_id
    LEFT JOIN consent c ON c.site_id = rs.site_id AND c.rs_id = rs.id AND c.pick = 1
    ANTI JOIN withdrawn w ON w.site_id = rs.site_id AND w.rs_id = rs.id
)
SELECT usubjid, site_id, gender AS sex,
       TRY_CAST(substr(birth_date, 1, 4) AS INTEGER) AS birth_year,
       -- ages (age_at_consent, age_min, age_max, age_on, age_basis) are set by the age rule
       -- (rules/dates.py) right after this statement: a partial birth date needs it
       CASE WHEN arm_letter IN ('A', 'B') THEN arm_letter END AS arm,
       CASE WHEN arm_letter IN ('A', 'B') THEN period_start END AS randomised_on,
       CASE WHEN arm_letter IN ('A', 'B') THEN NULL ELSE period_end END AS screening_ended_on,
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

-- Patient id -> usubjid, for the other tables' joins. It stays in the working database's
-- staging schema: a site's Patient id can be its MRN, so no core table carries it.
CREATE OR REPLACE TABLE core_stage.subject_of_patient AS
SELECT r.site_id, r.patient_id, min(u.usubjid) AS usubjid
FROM flat.research_subject r
JOIN core_stage.usubjids u ON u.site_id = r.site_id AND u.research_subject_id = r.id
JOIN core.subjects s ON s.usubjid = u.usubjid
GROUP BY ALL;
