-- Reverts 0003. Problems that are inactive or entered in error become
-- "resolved" (the only non-active status 0002 knows), so no row is lost;
-- allergies keep their rows but lose their status (all read as active), so
-- check the allergy lists after a rollback.
DROP TABLE vitals;

UPDATE problems SET status = 'resolved' WHERE status NOT IN ('active','resolved');
ALTER TABLE problems DROP CONSTRAINT problems_status_check;
ALTER TABLE problems ADD CONSTRAINT problems_status_check CHECK (status IN ('active','resolved'));
ALTER TABLE problems DROP COLUMN updated_at;
ALTER TABLE problems DROP COLUMN updated_by;
ALTER TABLE problems DROP COLUMN version;
ALTER TABLE problems DROP COLUMN resolved_on;

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
