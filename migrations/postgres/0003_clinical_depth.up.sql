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
ALTER TABLE patients ADD COLUMN nkda_at TIMESTAMPTZ;
ALTER TABLE patients ADD COLUMN nkda_by UUID REFERENCES users(id);
ALTER TABLE patients ADD COLUMN phone_key TEXT COLLATE "C";
UPDATE patients SET phone_key = replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '(', ''), ')', ''), '.', ''), '+', '')
    WHERE phone IS NOT NULL;
CREATE INDEX patients_phone_key ON patients(phone_key);

-- Allergies are never deleted: they become inactive, resolved or
-- entered in error, each change versioned.
ALTER TABLE allergies ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active','inactive','resolved','entered_in_error'));
ALTER TABLE allergies ADD COLUMN resolved_on TEXT;
ALTER TABLE allergies ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE allergies ADD COLUMN updated_by UUID REFERENCES users(id);
ALTER TABLE allergies ADD COLUMN updated_at TIMESTAMPTZ;

ALTER TABLE problems DROP CONSTRAINT problems_status_check;
ALTER TABLE problems ADD CONSTRAINT problems_status_check
    CHECK (status IN ('active','inactive','resolved','entered_in_error'));
ALTER TABLE problems ADD COLUMN resolved_on TEXT;
ALTER TABLE problems ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE problems ADD COLUMN updated_by UUID REFERENCES users(id);
ALTER TABLE problems ADD COLUMN updated_at TIMESTAMPTZ;

-- One set of vital signs; any measurement may be absent. Flags are computed
-- when recorded (like lab flags) and kept with the set.
CREATE TABLE vitals (
    id                UUID PRIMARY KEY,
    patient_id        UUID NOT NULL REFERENCES patients(id),
    recorded_at       TIMESTAMPTZ NOT NULL,
    systolic          DOUBLE PRECISION,
    diastolic         DOUBLE PRECISION,
    heart_rate        DOUBLE PRECISION,
    respiratory_rate  DOUBLE PRECISION,
    temperature       DOUBLE PRECISION,
    spo2              DOUBLE PRECISION,
    weight_kg         DOUBLE PRECISION,
    height_cm         DOUBLE PRECISION,
    bmi               DOUBLE PRECISION,
    flags             TEXT NOT NULL,
    critical          BOOLEAN NOT NULL,
    abnormal          BOOLEAN NOT NULL,
    recorded_by       UUID NOT NULL REFERENCES users(id),
    entered_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX vitals_patient ON vitals(patient_id, recorded_at, id);
CREATE INDEX vitals_critical ON vitals(entered_at, id) WHERE critical;
