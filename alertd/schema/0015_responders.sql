-- "one household alarms, ten respond": who is coming (JSON [[who, label, at], ...]), the quorum a policy
-- step asked for and whether it was reached or missed; drills, kept apart from the real statistics
    ALTER TABLE incidents ADD COLUMN responders TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE incidents ADD COLUMN quorum INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN quorum_state TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN drill INTEGER NOT NULL DEFAULT 0;
