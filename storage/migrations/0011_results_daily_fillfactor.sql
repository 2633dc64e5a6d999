-- The writer updates a device's current local day in results_daily at every commit that closes
-- one of its windows. With full pages every update writes a new row version on another page and
-- a new entry in both indexes; with room left on the page the update is HOT (heap-only: no
-- indexed column changes, so no index entry) and the old versions are pruned in place.
-- Applies to pages written from now on.
ALTER TABLE results_daily SET (fillfactor = 70);
