ALTER TABLE export_jobs DROP COLUMN group_id;
