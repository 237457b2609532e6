-- Reverts 0003. Problems that are inactive or entered in error become
-- "resolved" (the only non-active status 0002 knows), so no row is lost;
-- allergies keep their rows but lose their status (all read as active), so
-- check the allergy lists after a rollback.
DROP TABLE vitals;

CREATE TABLE problems_old (
    id           BLOB PRIMARY KEY NOT NULL,
    patient_id   BLOB NOT NULL REFERENCES patients(id),
    description  TEXT NOT NULL,
    code         TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active','resolved')),
    recorded_by  BLOB NOT NULL REFERENCES users(id),
    recorded_at  TEXT NOT NULL
);
INSERT INTO problems_old (id, patient_id, description, code, status, recorded_by, recorded_at)
    SELECT id, patient_id, description, code,
           CASE WHEN status = 'active' THEN 'active' ELSE 'resolved' END,
           recorded_by, recorded_at FROM problems;
DROP TABLE problems;
ALTER TABLE problems_old RENAME TO problems;
CREATE INDEX problems_patient ON problems(patient_id, status);

ALTER TABLE allergies DROP COLUMN updated_at;
ALTER TABLE allergies DROP COLUMN updated_by;
ALTER TABLE allergies DROP COLUMN version;
ALTER TABLE allergies DROP COLUMN resolved_on;
ALTER TABLE allergies DROP COLUMN status;

DROP INDEX patients_phone_key;
ALTER TABLE patients DROP COLUMN phone_key;
ALTER TABLE patients DROP COLUMN nkda_by;
ALTER TABLE patients DROP COLUMN nkda_at;

DROP INDEX labs_patient_unreviewed_critical;
DROP INDEX labs_worklist;
ALTER TABLE labs DROP COLUMN review_action;
ALTER TABLE labs DROP COLUMN review_comment;
