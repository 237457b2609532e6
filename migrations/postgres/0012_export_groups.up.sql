-- Group-level bulk export (issue 15): a job may cover the patients of one
-- care team (the FHIR Group). No foreign key: deleting a team must not be
-- blocked by an export job, and a job of a deleted team simply finds no
-- patients (a NULL here would wrongly read as "every patient").
ALTER TABLE export_jobs ADD COLUMN group_id UUID;
