-- bearer tokens for integrations (a 12345 platform): each acts as its user, with that user's role and groups
    CREATE TABLE api_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        label TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        last_used REAL
    ) WITHOUT ROWID;
