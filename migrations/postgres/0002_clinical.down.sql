DROP TABLE labs;
DROP TABLE prescriptions;
DROP TABLE note_addenda;
DROP TABLE notes;
DROP TABLE problems;
DROP TABLE allergies;
DROP TABLE patients;
