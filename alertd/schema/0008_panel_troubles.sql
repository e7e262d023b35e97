-- an alarm panel's troubles (AC loss, communication) and its arming state (Contact ID 301/350, 4xx)
    ALTER TABLE devices ADD COLUMN ac_loss INTEGER;
    ALTER TABLE devices ADD COLUMN comm_trouble INTEGER;
    ALTER TABLE devices ADD COLUMN armed TEXT;
    ALTER TABLE devices ADD COLUMN armed_user INTEGER;
    ALTER TABLE devices ADD COLUMN armed_at REAL;
