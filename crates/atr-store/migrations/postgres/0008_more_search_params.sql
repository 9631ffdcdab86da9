-- Search parameters added for search and the export's _typeFilter: Patient gender and birthdate,
-- Coverage status (atr_model::index indexes them on every write from now on). This fills them in
-- for what is already stored, the way the writer does: a code under its FHIR code system, a date
-- as the first day it covers.
INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code)
SELECT rtype, id, 'gender', 'http://hl7.org/fhir/administrative-gender', j->>'gender', '', ''
FROM (SELECT rtype, id, convert_from(body, 'UTF8')::jsonb AS j
      FROM resource_version WHERE rtype = 'Patient' AND is_current AND NOT deleted) v
WHERE jsonb_typeof(j->'gender') = 'string';

INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code)
SELECT rtype, id, 'status', 'http://hl7.org/fhir/fm-status', j->>'status', '', ''
FROM (SELECT rtype, id, convert_from(body, 'UTF8')::jsonb AS j
      FROM resource_version WHERE rtype = 'Coverage' AND is_current AND NOT deleted) v
WHERE jsonb_typeof(j->'status') = 'string';

INSERT INTO search_token (rtype, id, param, system, code, type_system, type_code)
SELECT rtype, id, 'birthdate', '',
       CASE length(d) WHEN 4 THEN d || '-01-01' WHEN 7 THEN d || '-01' ELSE d END, '', ''
FROM (SELECT rtype, id, j->>'birthDate' AS d
      FROM (SELECT rtype, id, convert_from(body, 'UTF8')::jsonb AS j
            FROM resource_version WHERE rtype = 'Patient' AND is_current AND NOT deleted) v
      WHERE jsonb_typeof(j->'birthDate') = 'string') b
WHERE length(d) IN (4, 7, 10);
