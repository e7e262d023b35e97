-- active/standby (issue 15): the instance that opened each incident, so that a takeover can be audited
-- (every incident has exactly one opener); '' for a store only ever used by one unnamed instance
    ALTER TABLE incidents ADD COLUMN instance TEXT NOT NULL DEFAULT '';
