-- When each reading became visible in the database (the writing transaction's start), so the
-- end-to-end latency (gateway receive -> stored) can be measured from the data itself.
-- now() is stable: existing rows get the migration time without a table rewrite.
ALTER TABLE readings ADD COLUMN IF NOT EXISTS stored_at timestamptz NOT NULL DEFAULT now();
