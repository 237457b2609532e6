ALTER TABLE prescriptions DROP COLUMN unchecked_acknowledged;
ALTER TABLE prescriptions DROP COLUMN duplicate_override_reason;
ALTER TABLE prescriptions DROP COLUMN interaction_override_reason;
