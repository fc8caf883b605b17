-- One row per accepted email that carries an emailId. The unique key is the
-- protocol's de-duplication: (account, emailId) is processed once, ever.
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    email_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,          -- unix milliseconds
    message_id TEXT,
    mail_from TEXT NOT NULL,
    email_ack TEXT,
    email_not TEXT,
    error_code INTEGER,                    -- request-level refusal (23, 34, 6): no job, one etat
    pending_jobs INTEGER NOT NULL,         -- jobs without a final outcome; etatNot when it reaches 0
    completed_at INTEGER,
    UNIQUE (account, email_id)
);

-- Facts about this database itself.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL                    -- e.g. store_id: names this database in client references
);

-- One row per recipient of a request. AUTOINCREMENT: a job id is never
-- reused, even after retention purges, because it is the client reference
-- providers (and the outbox file) keep.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL REFERENCES requests (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,                  -- position in the request: etatN numbering
    tel TEXT NOT NULL,                     -- the number as the sender wrote it
    number TEXT,                           -- E.164; NULL when the number was refused
    text TEXT NOT NULL,
    account TEXT NOT NULL,                 -- copied from the request so that a claim reads one table
    email_id TEXT NOT NULL,
    sender_id TEXT,
    tracker TEXT,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL,                  -- queued | sending | sent | failed | duplicate
    same_as INTEGER,                       -- duplicate: seq of the same number's first occurrence
    code INTEGER,                          -- final iSendPro code
    detail TEXT,                           -- why, in words (provider text, rule)
    provider TEXT,
    provider_ref TEXT,
    provider_index INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,   -- tries in all
    provider_attempts INTEGER NOT NULL DEFAULT 0,  -- tries on the current provider
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX jobs_sending ON jobs (id) WHERE status = 'sending';
CREATE INDEX jobs_request ON jobs (request_id, seq);

-- Reply emails to send (etatAck, etatNot), kept until sent.
CREATE TABLE replies (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                    -- ack | not
    request_id INTEGER REFERENCES requests (id) ON DELETE CASCADE,
    recipient TEXT NOT NULL,
    email_id TEXT,
    ack_code INTEGER,
    status TEXT NOT NULL,                  -- pending | sending | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX replies_due ON replies (next_attempt_at, id) WHERE status = 'pending';
-- Retention: "are this request's replies settled?" and the cascade delete.
CREATE INDEX replies_request ON replies (request_id) WHERE request_id IS NOT NULL;
