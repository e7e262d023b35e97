-- facts about the store itself (when it was first used, the last daily digest planned). A store
-- that already holds history predates this table: it counts as in use since the epoch.
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value)
        SELECT 'first_started_at', '0'
        WHERE EXISTS (SELECT 1 FROM incidents) OR EXISTS (SELECT 1 FROM notifications)
            OR EXISTS (SELECT 1 FROM devices);
