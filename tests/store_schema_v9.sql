-- sqlite_master of a store at schema version 9, as the MIGRATIONS tuple in alertd/store.py built it
-- before the schema moved to alertd/schema/*.sql (tests/test_store.py renders a store the same way).
-- Frozen: the first nine schema files must go on building exactly this; never regenerate it.

-- table devices on devices
CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        online INTEGER,
        battery INTEGER,
        last_seen REAL,
        last_test REAL
    , battery_low INTEGER, tampered INTEGER, state TEXT, ac_loss INTEGER, comm_trouble INTEGER, armed TEXT, armed_user INTEGER, armed_at REAL);
-- table inbound_messages on inbound_messages
CREATE TABLE inbound_messages (
        id TEXT PRIMARY KEY,
        first_seen_at REAL NOT NULL
    ) WITHOUT ROWID;
-- table incidents on incidents
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
    , silent INTEGER NOT NULL DEFAULT 0, device_id TEXT, maintenance TEXT);
-- table meta on meta
CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
-- table notifications on notifications
CREATE TABLE "notifications" (
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
-- table seen_alarms on seen_alarms
CREATE TABLE seen_alarms (
        device_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (device_id, seq)
    ) WITHOUT ROWID;
-- table timeline on timeline
CREATE TABLE timeline (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        at REAL NOT NULL,
        event TEXT NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
-- table webhook_tokens on webhook_tokens
CREATE TABLE webhook_tokens (
        token TEXT PRIMARY KEY,
        at REAL NOT NULL
    ) WITHOUT ROWID;
-- index sqlite_autoindex_devices_1 on devices (made by SQLite)
-- index incidents_active on incidents
CREATE INDEX incidents_active ON incidents(state) WHERE state IN ('open', 'acknowledged', 'on_scene');
-- index notifications_incident on notifications
CREATE INDEX notifications_incident ON notifications(incident_id);
-- index notifications_pending on notifications
CREATE INDEX notifications_pending ON notifications(channel, next_attempt_at) WHERE status = 'pending';
-- index notifications_provider on notifications
CREATE INDEX notifications_provider ON notifications(provider_id) WHERE provider_id IS NOT NULL;
-- index notifications_sending on notifications
CREATE INDEX notifications_sending ON notifications(channel) WHERE status = 'sending';
-- index sqlite_autoindex_notifications_1 on notifications (made by SQLite)
-- index timeline_incident on timeline
CREATE INDEX timeline_incident ON timeline(incident_id, id);
