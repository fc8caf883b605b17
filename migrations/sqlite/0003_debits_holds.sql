-- Segments debited from the account's credit balance for this job's
-- current send (0: none). A send that does not end in "sent" gives them
-- back in the same transaction that records its outcome, so a crash can
-- neither lose nor double a debit.
ALTER TABLE jobs ADD COLUMN debited INTEGER NOT NULL DEFAULT 0;

-- The end of the last hold that kept the job from any provider (quiet
-- hours, provider put aside): the age limit (dispatch.max_age_secs) counts
-- from it rather than from reception, so waiting never uses up the time a
-- job has to go through.
ALTER TABLE jobs ADD COLUMN held_until INTEGER;
