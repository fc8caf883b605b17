-- Alert mail (issue 10): requests without an emailId, Message-ID
-- de-duplication, storm control and failure notices.
--
-- Alert requests live in `requests` like `<envoi>` ones, so that their jobs,
-- completion and retention work the same way; what changes:
-- - `email_id` may be NULL (an alert has none). UNIQUE (account, email_id)
--   keeps de-duplicating `<envoi>` requests exactly as before: SQLite never
--   finds two NULLs equal, so alerts never conflict with anything.
-- - `return_path` (NOT NULL only for alerts: it is what marks a request as
--   an alert) and `failure_notice`: where and whether a delivery status
--   notification goes when one of its SMS fails.
-- - `jobs.alert_text_hash`: set on the alert SMS actually queued, so that
--   "the same text to this number lately" and "alert SMS to this number in
--   the last hour" are read from one partial index.
-- - `alert_held`: per account and number, the alert SMS held back since the
--   last one that went (the next one says how many).
--
-- SQLite cannot drop a NOT NULL constraint, so `requests` is rebuilt. With
-- foreign keys on (the migration runs inside a transaction, where they
-- cannot be turned off), dropping the old `requests` would cascade-delete
-- every job and reply; so the two child tables are rebuilt too, each new
-- child pointing at the new parent, and the old tables are dropped children
-- first, when nothing references them any more. `jobs` keeps its
-- AUTOINCREMENT counter, so a job id (a provider's client reference) is
-- never reused.

CREATE TABLE requests_new (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    email_id TEXT,                         -- NULL for alert mail
    received_at INTEGER NOT NULL,          -- unix milliseconds
    message_id TEXT,
    mail_from TEXT NOT NULL,
    email_ack TEXT,
    email_not TEXT,
    error_code INTEGER,                    -- request-level refusal (23, 34, 6): no job, one etat
    pending_jobs INTEGER NOT NULL,         -- jobs without a final outcome; etatNot / DSN when it reaches 0
    completed_at INTEGER,
    sender_id TEXT,                        -- <emetteur> (after the rules), NULL: none
    tracker TEXT,                          -- <tracker>, passed to providers
    return_path TEXT,                      -- alerts only: the envelope sender, '' for <>; NULL: an <envoi> request
    failure_notice INTEGER NOT NULL DEFAULT 0,  -- alerts: 1 if a DSN goes to return_path when an SMS fails
    UNIQUE (account, email_id)
);
INSERT INTO requests_new (id, account, email_id, received_at, message_id, mail_from, email_ack,
                          email_not, error_code, pending_jobs, completed_at, sender_id, tracker)
SELECT id, account, email_id, received_at, message_id, mail_from, email_ack,
       email_not, error_code, pending_jobs, completed_at, sender_id, tracker
FROM requests;

CREATE TABLE jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id INTEGER NOT NULL REFERENCES requests_new (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,                  -- position in the request: etatN numbering
    tel TEXT NOT NULL,                     -- the number (or alert address) as the sender wrote it
    number TEXT,                           -- E.164; NULL when the number was refused or the SMS held back
    text TEXT NOT NULL,
    account TEXT NOT NULL,                 -- copied from the request so that a claim reads one table
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL,                  -- queued | sending | sent | failed | duplicate | held
    same_as INTEGER,                       -- duplicate: seq of the same number's first occurrence
    code INTEGER,                          -- final iSendPro code
    detail TEXT,                           -- why, in words (provider text, rule, hold-back)
    provider TEXT,
    provider_ref TEXT,
    provider_index INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,   -- tries in all
    provider_attempts INTEGER NOT NULL DEFAULT 0,  -- tries on the current provider
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    debited INTEGER NOT NULL DEFAULT 0,    -- segments debited for the current send (0003)
    held_until INTEGER,                    -- end of the last hold (0003)
    alert_text_hash INTEGER                -- alert SMS queued to be sent: its text's hash; else NULL
);
INSERT INTO jobs_new (id, request_id, seq, tel, number, text, account, received_at, status,
                      same_as, code, detail, provider, provider_ref, provider_index, attempts,
                      provider_attempts, next_attempt_at, updated_at, debited, held_until)
SELECT id, request_id, seq, tel, number, text, account, received_at, status,
       same_as, code, detail, provider, provider_ref, provider_index, attempts,
       provider_attempts, next_attempt_at, updated_at, debited, held_until
FROM jobs;
-- The old counter, not max(id): purged jobs' ids stay used.
DELETE FROM sqlite_sequence WHERE name = 'jobs_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'jobs_new', seq FROM sqlite_sequence WHERE name = 'jobs';

CREATE TABLE replies_new (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,                    -- ack | not | dsn
    request_id INTEGER REFERENCES requests_new (id) ON DELETE CASCADE,
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
INSERT INTO replies_new (id, kind, request_id, recipient, email_id, ack_code, status, attempts,
                         next_attempt_at, last_error, created_at, sent_at)
SELECT id, kind, request_id, recipient, email_id, ack_code, status, attempts,
       next_attempt_at, last_error, created_at, sent_at
FROM replies;

-- Children first: when `requests` goes, nothing references it any more.
DROP TABLE replies;
DROP TABLE jobs;
DROP TABLE requests;
ALTER TABLE requests_new RENAME TO requests;
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE replies_new RENAME TO replies;

CREATE INDEX jobs_due ON jobs (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX jobs_sending ON jobs (id) WHERE status = 'sending';
CREATE INDEX jobs_request ON jobs (request_id, seq);
CREATE INDEX jobs_received ON jobs (received_at, account, number) WHERE number IS NOT NULL;
CREATE INDEX replies_due ON replies (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX replies_request ON replies (request_id) WHERE request_id IS NOT NULL;

-- Storm control at accept, from the indexes alone: alert SMS queued to one
-- number of one account in the last hour (a range of received_at), and
-- whether one had the same text lately (the hash first, then the range:
-- a number that got 20 000 alerts is not scanned for each new one).
CREATE INDEX jobs_alert_number ON jobs (account, number, received_at, alert_text_hash)
    WHERE alert_text_hash IS NOT NULL;
CREATE INDEX jobs_alert_text ON jobs (account, number, alert_text_hash, received_at)
    WHERE alert_text_hash IS NOT NULL;

-- Message-ID de-duplication of alerts: an MTA's retry of a message
-- accepted lately for the same account.
CREATE INDEX requests_alert_message ON requests (account, message_id, received_at)
    WHERE return_path IS NOT NULL AND message_id IS NOT NULL;

-- Alert SMS held back per number since the last one that went: the next
-- one that goes says how many, and the count goes back to 0 (the row is
-- deleted) in the same transaction.
CREATE TABLE alert_held (
    account TEXT NOT NULL,                 -- the account's name in the config
    number TEXT NOT NULL,                  -- E.164
    held INTEGER NOT NULL,                 -- alert SMS held back since the last one sent
    PRIMARY KEY (account, number)
) WITHOUT ROWID;
