-- Clinical core: patients, allergies, problems, notes and addenda,
-- prescriptions, lab results.
CREATE TABLE patients (
    id           UUID PRIMARY KEY,
    mrn          TEXT COLLATE "C" NOT NULL UNIQUE,
    given_name   TEXT NOT NULL,
    family_name  TEXT NOT NULL,
    -- Folded (lower-case, accents removed) "family given" and "given family",
    -- so a name prefix search is an index range scan in both engines (byte
    -- order, hence the C collation).
    search_fg    TEXT COLLATE "C" NOT NULL,
    search_gf    TEXT COLLATE "C" NOT NULL,
    birth_date   TEXT NOT NULL,
    sex          TEXT NOT NULL CHECK (sex IN ('female','male','other','unknown')),
    phone        TEXT,
    email        TEXT,
    address      TEXT,
    version      BIGINT NOT NULL DEFAULT 1,
    created_by   UUID NOT NULL REFERENCES users(id),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX patients_search_fg ON patients(search_fg, id);
CREATE INDEX patients_search_gf ON patients(search_gf, id);
CREATE INDEX patients_birth_date ON patients(birth_date);

CREATE TABLE allergies (
    id           UUID PRIMARY KEY,
    patient_id   UUID NOT NULL REFERENCES patients(id),
    substance    TEXT NOT NULL,
    reaction     TEXT,
    severity     TEXT NOT NULL CHECK (severity IN ('mild','moderate','severe','unknown')),
    recorded_by  UUID NOT NULL REFERENCES users(id),
    recorded_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX allergies_patient ON allergies(patient_id);

CREATE TABLE problems (
    id           UUID PRIMARY KEY,
    patient_id   UUID NOT NULL REFERENCES patients(id),
    description  TEXT NOT NULL,
    code         TEXT,
    status       TEXT NOT NULL CHECK (status IN ('active','resolved')),
    recorded_by  UUID NOT NULL REFERENCES users(id),
    recorded_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX problems_patient ON problems(patient_id, status);

CREATE TABLE notes (
    id            UUID PRIMARY KEY,
    patient_id    UUID NOT NULL REFERENCES patients(id),
    author_id     UUID NOT NULL REFERENCES users(id),
    title         TEXT NOT NULL,
    subjective    TEXT NOT NULL,
    objective     TEXT NOT NULL,
    assessment    TEXT NOT NULL,
    plan          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('draft','final')),
    ai_generated  BOOLEAN NOT NULL DEFAULT FALSE,
    signed_by     UUID REFERENCES users(id),
    signed_at     TIMESTAMPTZ,
    content_hash  TEXT,
    version       BIGINT NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX notes_patient ON notes(patient_id, created_at, id);
CREATE INDEX notes_author_status ON notes(author_id, status);

CREATE TABLE note_addenda (
    id            UUID PRIMARY KEY,
    note_id       UUID NOT NULL REFERENCES notes(id),
    author_id     UUID NOT NULL REFERENCES users(id),
    text          TEXT NOT NULL,
    signed_at     TIMESTAMPTZ NOT NULL,
    content_hash  TEXT NOT NULL
);
CREATE INDEX note_addenda_note ON note_addenda(note_id, signed_at);

CREATE TABLE prescriptions (
    id               UUID PRIMARY KEY,
    patient_id       UUID NOT NULL REFERENCES patients(id),
    created_by       UUID NOT NULL REFERENCES users(id),
    medication       TEXT NOT NULL,
    dose             TEXT NOT NULL,
    route            TEXT NOT NULL,
    frequency        TEXT NOT NULL,
    quantity         BIGINT NOT NULL,
    refills          BIGINT NOT NULL,
    instructions     TEXT,
    status           TEXT NOT NULL CHECK (status IN ('draft','issued','cancelled')),
    issued_by        UUID REFERENCES users(id),
    issued_at        TIMESTAMPTZ,
    override_reason  TEXT,
    cancelled_by     UUID REFERENCES users(id),
    cancelled_at     TIMESTAMPTZ,
    cancel_reason    TEXT,
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX prescriptions_patient ON prescriptions(patient_id, status, created_at);
CREATE INDEX prescriptions_issued ON prescriptions(issued_by, issued_at);

CREATE TABLE labs (
    id              UUID PRIMARY KEY,
    patient_id      UUID NOT NULL REFERENCES patients(id),
    code            TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           DOUBLE PRECISION NOT NULL,
    unit            TEXT NOT NULL,
    reference_low   DOUBLE PRECISION,
    reference_high  DOUBLE PRECISION,
    flag            TEXT CHECK (flag IN ('normal','low','high','critical_low','critical_high')),
    warning         TEXT,
    collected_at    TIMESTAMPTZ NOT NULL,
    recorded_by     UUID NOT NULL REFERENCES users(id),
    recorded_at     TIMESTAMPTZ NOT NULL,
    reviewed_by     UUID REFERENCES users(id),
    reviewed_at     TIMESTAMPTZ
);
CREATE INDEX labs_patient_code ON labs(patient_id, code, collected_at);
CREATE INDEX labs_unreviewed ON labs(reviewed_at, flag);
