-- duress and silent panic (Contact ID 121/122)
    ALTER TABLE incidents ADD COLUMN silent INTEGER NOT NULL DEFAULT 0;
