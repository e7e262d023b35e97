-- delivery reports that arrived before the send's provider id was recorded (a carrier may call back
-- faster than the outbox records its answer): applied when the id is recorded, pruned with the tokens
    CREATE TABLE early_deliveries (
        provider_id TEXT PRIMARY KEY,
        delivery TEXT NOT NULL,
        at REAL NOT NULL
    ) WITHOUT ROWID;
