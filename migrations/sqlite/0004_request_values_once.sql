-- Values that belong to a request are stored once, on the request, not
-- copied into every recipient's row: a 500-number email with a long
-- emailId wrote it 500 times (issue 8). Claims read them from the request
-- through its primary key.
ALTER TABLE requests ADD COLUMN sender_id TEXT;   -- <emetteur> (after the rules), NULL: none
ALTER TABLE requests ADD COLUMN tracker TEXT;     -- <tracker>, passed to providers
UPDATE requests SET
    sender_id = (SELECT j.sender_id FROM jobs j WHERE j.request_id = requests.id ORDER BY j.seq LIMIT 1),
    tracker = (SELECT j.tracker FROM jobs j WHERE j.request_id = requests.id ORDER BY j.seq LIMIT 1);
ALTER TABLE jobs DROP COLUMN email_id;
ALTER TABLE jobs DROP COLUMN sender_id;
ALTER TABLE jobs DROP COLUMN tracker;
