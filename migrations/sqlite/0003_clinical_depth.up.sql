-- Clinical depth: the worklist's review notes, the lifecycle of allergies
-- and problems, the "no known drug allergies" statement, duplicate-patient
-- detection by phone, and vital signs.

-- A review may say what was done ("patient called") and why.
ALTER TABLE labs ADD COLUMN review_comment TEXT;
ALTER TABLE labs ADD COLUMN review_action TEXT;
-- The worklist: unreviewed flagged results, newest arrival first.
CREATE INDEX labs_worklist ON labs(recorded_at, id)
    WHERE reviewed_at IS NULL AND flag IN ('low','high','critical_low','critical_high');
CREATE INDEX labs_patient_unreviewed_critical ON labs(patient_id, collected_at)
    WHERE reviewed_at IS NULL AND flag IN ('critical_low','critical_high');

-- "No known drug allergies", stated by a clinician; recording an allergy
-- clears it. The phone's digits, to find a likely duplicate registration.
ALTER TABLE patients ADD COLUMN nkda_at TEXT;
-- (No REFERENCES on added columns: SQLite cannot drop such a column on rollback.)
ALTER TABLE patients ADD COLUMN nkda_by BLOB;
ALTER TABLE patients ADD COLUMN phone_key TEXT;
UPDATE patients SET phone_key = replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), '.', ''), '+', '')
    WHERE phone IS NOT NULL;
CREATE INDEX patients_phone_key ON patients(phone_key);

-- Allergies are never deleted: they become inactive, resolved or
-- entered in error, each change versioned.
ALTER TABLE allergies ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active','inactive','resolved','entered_in_error'));
ALTER TABLE allergies ADD COLUMN resolved_on TEXT;
ALTER TABLE allergies ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE allergies ADD COLUMN updated_by BLOB;
ALTER TABLE allergies ADD COLUMN updated_at TEXT;

-- Problems gain the same statuses; SQLite cannot alter a CHECK constraint,
-- so the table is rebuilt (no other table references it).
CREATE TABLE problems_new (
    id           BLOB PRIMARY KEY NOT NULL,
    patient_id   BLOB NOT NULL REFERENCES patients(id),
    description  TEXT NOT NULL,
    code         TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active','inactive','resolved','entered_in_error')),
    recorded_by  BLOB NOT NULL REFERENCES users(id),
    recorded_at  TEXT NOT NULL,
    resolved_on  TEXT,
    version      INTEGER NOT NULL DEFAULT 1,
    updated_by   BLOB REFERENCES users(id),
    updated_at   TEXT
);
INSERT INTO problems_new (id, patient_id, description, code, status, recorded_by, recorded_at)
    SELECT id, patient_id, description, code, status, recorded_by, recorded_at FROM problems;
DROP TABLE problems;
ALTER TABLE problems_new RENAME TO problems;
CREATE INDEX problems_patient ON problems(patient_id, status);

-- One set of vital signs; any measurement may be absent. Flags are computed
-- when recorded (like lab flags) and kept with the set.
CREATE TABLE vitals (
    id                BLOB PRIMARY KEY NOT NULL,
    patient_id        BLOB NOT NULL REFERENCES patients(id),
    recorded_at       TEXT NOT NULL,
    systolic          REAL,
    diastolic         REAL,
    heart_rate        REAL,
    respiratory_rate  REAL,
    temperature       REAL,
    spo2              REAL,
    weight_kg         REAL,
    height_cm         REAL,
    bmi               REAL,
    flags             TEXT NOT NULL,
    critical          BOOLEAN NOT NULL,
    abnormal          BOOLEAN NOT NULL,
    recorded_by       BLOB NOT NULL REFERENCES users(id),
    entered_at        TEXT NOT NULL
);
CREATE INDEX vitals_patient ON vitals(patient_id, recorded_at, id);
CREATE INDEX vitals_critical ON vitals(entered_at, id) WHERE critical;
