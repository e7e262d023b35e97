-- 平安键: an incident opened because a household living alone showed no sign of life by its check-in time
    ALTER TABLE incidents ADD COLUMN welfare INTEGER NOT NULL DEFAULT 0;
