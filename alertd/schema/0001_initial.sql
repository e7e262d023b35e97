-- the first schema
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        household_id TEXT NOT NULL,
        group_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        policy TEXT NOT NULL,
        state TEXT NOT NULL,
        opened_at REAL NOT NULL,
        last_alarm_at REAL NOT NULL,
        next_step INTEGER,
        next_step_at REAL,
        acknowledged_at REAL,
        acknowledged_by TEXT,
        on_scene_at REAL,
        resolved_at REAL,
        outcome TEXT,
        rung TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX incidents_active ON incidents(state) WHERE state IN ('open', 'acknowledged', 'on_scene');
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at REAL NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX timeline_incident ON timeline(incident_id, id);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
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
    CREATE INDEX notifications_due ON notifications(channel, next_attempt_at)
        WHERE status IN ('pending', 'sending');
    CREATE INDEX notifications_incident ON notifications(incident_id);
    CREATE INDEX notifications_provider ON notifications(provider_id) WHERE provider_id IS NOT NULL;
    CREATE TABLE seen_alarms (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (device_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        online INTEGER,
        battery INTEGER,
        last_seen REAL,
        last_test REAL
    );
    CREATE TABLE webhook_tokens (
        token TEXT PRIMARY KEY,
        at REAL NOT NULL
    ) WITHOUT ROWID;
