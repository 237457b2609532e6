DROP TABLE export_jobs;
DROP TABLE hl7_results;
DROP TABLE hl7_messages;
