-- Interoperability: HL7 v2 messages accepted (idempotency on the sender's
-- message control id) and the sender's own view of each result stored.
CREATE TABLE hl7_messages (
    id            UUID PRIMARY KEY,
    -- MSH-3 and MSH-4 (sending application and facility), joined by '|'.
    sender        TEXT NOT NULL,
    -- MSH-10, unique per sender.
    control_id    TEXT NOT NULL,
    patient_id    UUID NOT NULL REFERENCES patients(id),
    ack_code      TEXT NOT NULL CHECK (ack_code IN ('AA','AE','AR')),
    -- The ACK we answered, replayed for a repeated message.
    ack           TEXT NOT NULL,
    result_count  BIGINT NOT NULL,
    received_by   UUID NOT NULL REFERENCES users(id),
    received_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (sender, control_id)
);

CREATE TABLE hl7_results (
    lab_id        UUID PRIMARY KEY REFERENCES labs(id),
    message_id    UUID NOT NULL REFERENCES hl7_messages(id),
    -- The OBX's segment position in the message.
    obx_position  BIGINT NOT NULL,
    -- OBX-8 and OBX-7 as the laboratory sent them.
    sender_flag   TEXT,
    sender_range  TEXT,
    -- The flag our own reference table computed from the value.
    our_flag      TEXT
);
CREATE INDEX hl7_results_message ON hl7_results(message_id);

-- FHIR bulk export jobs ($export): state shared by every instance.
CREATE TABLE export_jobs (
    id            UUID PRIMARY KEY,
    -- NULL for a system-level export of every patient.
    patient_id    UUID REFERENCES patients(id),
    requested_by  UUID NOT NULL REFERENCES users(id),
    types         TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('running','complete','failed')),
    progress      TEXT NOT NULL,
    -- The manifest's output list (JSON) once complete.
    output        TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    completed_at  TIMESTAMPTZ,
    -- Files are deleted and the job forgotten after this time.
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX export_jobs_expires ON export_jobs(expires_at);
