-- the dispatcher asks for status = 'pending' only; an IN (...) partial index is never used for it
    DROP INDEX notifications_due;
    CREATE INDEX notifications_pending ON notifications(channel, next_attempt_at) WHERE status = 'pending';
    CREATE INDEX notifications_sending ON notifications(channel) WHERE status = 'sending';
