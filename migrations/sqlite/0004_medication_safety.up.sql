-- Medication safety (issue 12): the reasons a prescriber gave for issuing
-- despite a drug-drug interaction or a duplicate therapy, and the
-- acknowledgement that a medication outside the dictionary was issued
-- without the allergy and interaction checks.
ALTER TABLE prescriptions ADD COLUMN interaction_override_reason TEXT;
ALTER TABLE prescriptions ADD COLUMN duplicate_override_reason TEXT;
ALTER TABLE prescriptions ADD COLUMN unchecked_acknowledged BOOLEAN NOT NULL DEFAULT FALSE;
