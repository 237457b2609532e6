-- Care teams (who treats whom), break-glass sessions (emergency access to a
-- patient outside one's teams) and the review of clinical accounts an admin
-- created. The migration makes one default team holding every clinician and
-- every patient, so a clinic that never creates a second team sees no change.
CREATE TABLE care_teams (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    -- The default team receives every new patient and every new clinician.
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX care_teams_one_default ON care_teams(is_default) WHERE is_default;

CREATE TABLE care_team_members (
    team_id   BLOB NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
    user_id   BLOB NOT NULL REFERENCES users(id),
    added_at  TEXT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX care_team_members_user ON care_team_members(user_id);

CREATE TABLE care_team_patients (
    team_id     BLOB NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
    patient_id  BLOB NOT NULL REFERENCES patients(id),
    added_at    TEXT NOT NULL,
    PRIMARY KEY (team_id, patient_id)
);
CREATE INDEX care_team_patients_patient ON care_team_patients(patient_id);

CREATE TABLE break_glass (
    id           BLOB PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users(id),
    patient_id   BLOB NOT NULL REFERENCES patients(id),
    reason_code  TEXT NOT NULL,
    reason_text  TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    -- Set when the end event was recorded (at expiry, by the first request
    -- or the sweeper that notices it).
    ended_at     TEXT,
    reviewed_at  TEXT,
    reviewed_by  BLOB REFERENCES users(id),
    review_note  TEXT
);
CREATE INDEX break_glass_user_patient ON break_glass(user_id, patient_id, expires_at);
CREATE INDEX break_glass_open ON break_glass(ended_at);

-- A provider or nurse account an admin created (invite or CLI): reviewed by
-- an admin; with the two-person rule another admin must approve it first.
CREATE TABLE account_reviews (
    user_id            BLOB PRIMARY KEY NOT NULL REFERENCES users(id),
    created_by         BLOB REFERENCES users(id),
    via                TEXT NOT NULL,
    flagged_at         TEXT NOT NULL,
    approval_required  BOOLEAN NOT NULL DEFAULT FALSE,
    approved_at        TEXT,
    approved_by        BLOB REFERENCES users(id),
    reviewed_at        TEXT,
    reviewed_by        BLOB REFERENCES users(id)
);

INSERT INTO care_teams (id, name, is_default, created_at)
VALUES (X'00000000000070008000000000000001', 'Whole clinic', TRUE, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
INSERT INTO care_team_members (team_id, user_id, added_at)
SELECT X'00000000000070008000000000000001', id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM users WHERE role IN ('provider', 'nurse');
INSERT INTO care_team_patients (team_id, patient_id, added_at)
SELECT X'00000000000070008000000000000001', id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM patients;
