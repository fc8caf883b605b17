-- Prepaid credit per account, in SMS segments. No row: the account never had
-- a balance (it counts as 0 when credits are reserved). Debits are
-- conditional (`balance >= n`) so that daemons sharing the database never
-- overdraw; the CHECK is the last line of defence.
CREATE TABLE credits (
    account TEXT PRIMARY KEY,              -- the account's name in the config
    balance INTEGER NOT NULL CHECK (balance >= 0),  -- segments left
    updated_at INTEGER NOT NULL            -- unix milliseconds of the last change
);

-- Numbers that must not receive SMS, from one account or from all of them.
-- The CHECK refuses anything but E.164 (`+` then 2 to 15 digits, no leading
-- 0): a number stored in another form would never match, and the person
-- would keep receiving SMS.
CREATE TABLE optouts (
    scope TEXT NOT NULL,                   -- '' for every account, else the account's name
    number TEXT NOT NULL                   -- E.164, e.g. +33601020304
        CHECK (number GLOB '+[1-9]*' AND length(number) BETWEEN 3 AND 16
               AND substr(number, 2) NOT GLOB '*[^0-9]*'),
    added_at INTEGER NOT NULL,             -- unix milliseconds
    PRIMARY KEY (scope, number)
) WITHOUT ROWID;

-- Sending limits: SMS queued per account since a time (read at start-up),
-- without scanning every job ever kept. Only jobs with a number were queued
-- to be sent; `number` is a column so that the index covers the query (the
-- planner does not count a partial index's WHERE as covered).
CREATE INDEX jobs_received ON jobs (received_at, account, number) WHERE number IS NOT NULL;
