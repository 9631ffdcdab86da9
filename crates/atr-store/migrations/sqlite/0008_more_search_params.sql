-- Search parameters added for search and the export's _typeFilter: Patient gender and birthdate,
-- Coverage status (atr_model::index indexes them on every write from now on). This fills them in
-- for what is already stored, the way the writer does: a code under its FHIR code system, a date
-- as the first day it covers.
INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code)
SELECT rtype, id, 'gender', 'http://hl7.org/fhir/administrative-gender', v, '', ''
FROM (SELECT rtype, id,
             CASE WHEN NOT deleted AND json_valid(CAST(body AS TEXT))
                  AND json_type(CAST(body AS TEXT), '$.gender') = 'text'
                  THEN json_extract(CAST(body AS TEXT), '$.gender') END AS v
      FROM resource_version WHERE rtype = 'Patient' AND is_current)
WHERE v IS NOT NULL;

INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code)
SELECT rtype, id, 'status', 'http://hl7.org/fhir/fm-status', v, '', ''
FROM (SELECT rtype, id,
             CASE WHEN NOT deleted AND json_valid(CAST(body AS TEXT))
                  AND json_type(CAST(body AS TEXT), '$.status') = 'text'
                  THEN json_extract(CAST(body AS TEXT), '$.status') END AS v
      FROM resource_version WHERE rtype = 'Coverage' AND is_current)
WHERE v IS NOT NULL;

INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code)
SELECT rtype, id, 'birthdate', '',
       CASE length(d) WHEN 4 THEN d || '-01-01' WHEN 7 THEN d || '-01' ELSE d END, '', ''
FROM (SELECT rtype, id,
             CASE WHEN NOT deleted AND json_valid(CAST(body AS TEXT))
                  AND json_type(CAST(body AS TEXT), '$.birthDate') = 'text'
                  THEN json_extract(CAST(body AS TEXT), '$.birthDate') END AS d
      FROM resource_version WHERE rtype = 'Patient' AND is_current)
WHERE d IS NOT NULL AND length(d) IN (4, 7, 10);
