-- Care teams (who treats whom), break-glass sessions (emergency access to a
-- patient outside one's teams) and the review of clinical accounts an admin
-- created. The migration makes one default team holding every clinician and
-- every patient, so a clinic that never creates a second team sees no change.
CREATE TABLE care_teams (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    -- The default team receives every new patient and every new clinician.
    is_default  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX care_teams_one_default ON care_teams(is_default) WHERE is_default;

CREATE TABLE care_team_members (
    team_id   UUID NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
    user_id   UUID NOT NULL REFERENCES users(id),
    added_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX care_team_members_user ON care_team_members(user_id);

CREATE TABLE care_team_patients (
    team_id     UUID NOT NULL REFERENCES care_teams(id) ON DELETE CASCADE,
    patient_id  UUID NOT NULL REFERENCES patients(id),
    added_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (team_id, patient_id)
);
CREATE INDEX care_team_patients_patient ON care_team_patients(patient_id);

CREATE TABLE break_glass (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users(id),
    patient_id   UUID NOT NULL REFERENCES patients(id),
    reason_code  TEXT NOT NULL,
    reason_text  TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    -- Set when the end event was recorded (at expiry, by the first request
    -- or the sweeper that notices it).
    ended_at     TIMESTAMPTZ,
    reviewed_at  TIMESTAMPTZ,
    reviewed_by  UUID REFERENCES users(id),
    review_note  TEXT
);
CREATE INDEX break_glass_user_patient ON break_glass(user_id, patient_id, expires_at);
CREATE INDEX break_glass_open ON break_glass(ended_at);

-- A provider or nurse account an admin created (invite or CLI): reviewed by
-- an admin; with the two-person rule another admin must approve it first.
CREATE TABLE account_reviews (
    user_id            UUID PRIMARY KEY REFERENCES users(id),
    created_by         UUID REFERENCES users(id),
    via                TEXT NOT NULL,
    flagged_at         TIMESTAMPTZ NOT NULL,
    approval_required  BOOLEAN NOT NULL DEFAULT FALSE,
    approved_at        TIMESTAMPTZ,
    approved_by        UUID REFERENCES users(id),
    reviewed_at        TIMESTAMPTZ,
    reviewed_by        UUID REFERENCES users(id)
);

INSERT INTO care_teams (id, name, is_default, created_at)
VALUES ('00000000-0000-7000-8000-000000000001'::uuid, 'Whole clinic', TRUE, now());
INSERT INTO care_team_members (team_id, user_id, added_at)
SELECT '00000000-0000-7000-8000-000000000001'::uuid, id, now()
FROM users WHERE role IN ('provider', 'nurse');
INSERT INTO care_team_patients (team_id, patient_id, added_at)
SELECT '00000000-0000-7000-8000-000000000001'::uuid, id, now()
FROM patients;
