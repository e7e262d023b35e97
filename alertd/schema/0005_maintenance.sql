-- maintenance incidents (a device that cannot be trusted to raise an alarm)
    ALTER TABLE incidents ADD COLUMN device_id TEXT;
    ALTER TABLE incidents ADD COLUMN maintenance TEXT;
