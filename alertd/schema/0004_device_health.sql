-- device health (battery low, tamper) and the last state a sensor reported (transition detection)
    ALTER TABLE devices ADD COLUMN battery_low INTEGER;
    ALTER TABLE devices ADD COLUMN tampered INTEGER;
    ALTER TABLE devices ADD COLUMN state TEXT;
