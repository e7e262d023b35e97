-- notifications that belong to no incident (the daily readiness digest): incident_id may be NULL
    CREATE TABLE notifications_v6 (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        incident_id INTEGER REFERENCES incidents(id),
        step INTEGER NOT NULL,
        channel TEXT NOT NULL,
        purpose TEXT NOT NULL,
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        carrier TEXT,
        provider_id TEXT,
        error TEXT,
        delivery TEXT,
        created_at REAL NOT NULL,
        next_attempt_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    INSERT INTO notifications_v6 SELECT id, key, incident_id, step, channel, purpose, recipient, address, body,
        status, attempts, carrier, provider_id, error, delivery, created_at, next_attempt_at, updated_at
        FROM notifications;
    DROP TABLE notifications;
    ALTER TABLE notifications_v6 RENAME TO notifications;
    CREATE INDEX notifications_pending ON notifications(channel, next_attempt_at) WHERE status = 'pending';
    CREATE INDEX notifications_sending ON notifications(channel) WHERE status = 'sending';
    CREATE INDEX notifications_incident ON notifications(incident_id);
    CREATE INDEX notifications_provider ON notifications(provider_id) WHERE provider_id IS NOT NULL;
