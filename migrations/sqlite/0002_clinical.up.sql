-- Clinical core: patients, allergies, problems, notes and addenda,
-- prescriptions, lab results.
CREATE TABLE patients (
    id           BLOB PRIMARY KEY NOT NULL,
    mrn          TEXT NOT NULL UNIQUE,
    given_name   TEXT NOT NULL,
    family_name  TEXT NOT NULL,
    -- Folded (lower-case, accents removed) "family given" and "given family",
    -- so a name prefix search is an index range scan in both engines.
    search_fg    TEXT NOT NULL,
    search_gf    TEXT NOT NULL,
    birth_date   TEXT NOT NULL,
    sex          TEXT NOT NULL CHECK (sex IN ('female','male','other','unknown')),
    phone        TEXT,
    email        TEXT,
    address      TEXT,
    version      INTEGER NOT NULL DEFAULT 1,
    created_by   BLOB NOT NULL REFERENCES users(id),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX patients_search_fg ON patients(search_fg, id);
CREATE INDEX patients_search_gf ON patients(search_gf, id);
CREATE INDEX patients_birth_date ON patients(birth_date);

CREATE TABLE allergies (
    id           BLOB PRIMARY KEY NOT NULL,
    patient_id   BLOB NOT NULL REFERENCES patients(id),
    substance    TEXT NOT NULL,
    reaction     TEXT,
    severity     TEXT NOT NULL CHECK (severity IN ('mild','moderate','severe','unknown')),
    recorded_by  BLOB NOT NULL REFERENCES users(id),
    recorded_at  TEXT NOT NULL
);
CREATE INDEX allergies_patient ON allergies(patient_id);

CREATE TABLE problems (
    id           BLOB PRIMARY KEY NOT NULL,
    patient_id   BLOB NOT NULL REFERENCES patients(id),
    description  TEXT NOT NULL,
    code         TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active','resolved')),
    recorded_by  BLOB NOT NULL REFERENCES users(id),
    recorded_at  TEXT NOT NULL
);
CREATE INDEX problems_patient ON problems(patient_id, status);

CREATE TABLE notes (
    id            BLOB PRIMARY KEY NOT NULL,
    patient_id    BLOB NOT NULL REFERENCES patients(id),
    author_id     BLOB NOT NULL REFERENCES users(id),
    title         TEXT NOT NULL,
    subjective    TEXT NOT NULL,
    objective     TEXT NOT NULL,
    assessment    TEXT NOT NULL,
    plan          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('draft','final')),
    ai_generated  BOOLEAN NOT NULL DEFAULT FALSE,
    signed_by     BLOB REFERENCES users(id),
    signed_at     TEXT,
    content_hash  TEXT,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX notes_patient ON notes(patient_id, created_at, id);
CREATE INDEX notes_author_status ON notes(author_id, status);

CREATE TABLE note_addenda (
    id            BLOB PRIMARY KEY NOT NULL,
    note_id       BLOB NOT NULL REFERENCES notes(id),
    author_id     BLOB NOT NULL REFERENCES users(id),
    text          TEXT NOT NULL,
    signed_at     TEXT NOT NULL,
    content_hash  TEXT NOT NULL
);
CREATE INDEX note_addenda_note ON note_addenda(note_id, signed_at);

CREATE TABLE prescriptions (
    id               BLOB PRIMARY KEY NOT NULL,
    patient_id       BLOB NOT NULL REFERENCES patients(id),
    created_by       BLOB NOT NULL REFERENCES users(id),
    medication       TEXT NOT NULL,
    dose             TEXT NOT NULL,
    route            TEXT NOT NULL,
    frequency        TEXT NOT NULL,
    quantity         INTEGER NOT NULL,
    refills          INTEGER NOT NULL,
    instructions     TEXT,
    status           TEXT NOT NULL CHECK (status IN ('draft','issued','cancelled')),
    issued_by        BLOB REFERENCES users(id),
    issued_at        TEXT,
    override_reason  TEXT,
    cancelled_by     BLOB REFERENCES users(id),
    cancelled_at     TEXT,
    cancel_reason    TEXT,
    version          INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX prescriptions_patient ON prescriptions(patient_id, status, created_at);
CREATE INDEX prescriptions_issued ON prescriptions(issued_by, issued_at);

CREATE TABLE labs (
    id              BLOB PRIMARY KEY NOT NULL,
    patient_id      BLOB NOT NULL REFERENCES patients(id),
    code            TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           REAL NOT NULL,
    unit            TEXT NOT NULL,
    reference_low   REAL,
    reference_high  REAL,
    flag            TEXT CHECK (flag IN ('normal','low','high','critical_low','critical_high')),
    warning         TEXT,
    collected_at    TEXT NOT NULL,
    recorded_by     BLOB NOT NULL REFERENCES users(id),
    recorded_at     TEXT NOT NULL,
    reviewed_by     BLOB REFERENCES users(id),
    reviewed_at     TEXT
);
CREATE INDEX labs_patient_code ON labs(patient_id, code, collected_at);
CREATE INDEX labs_unreviewed ON labs(reviewed_at, flag);
