-- inbound messages handled (Twilio MessageSid, modem SIM slot): a replayed webhook or a message
-- read again from the SIM is recognised forever, since Twilio's signature carries no timestamp
    CREATE TABLE inbound_messages (
        id TEXT PRIMARY KEY,
        first_seen_at REAL NOT NULL
    ) WITHOUT ROWID;
