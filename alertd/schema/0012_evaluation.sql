-- 评单: the household's rating of a resolved alarm (satisfied, fair, dissatisfied) and who recorded it
    ALTER TABLE incidents ADD COLUMN satisfaction TEXT;
    ALTER TABLE incidents ADD COLUMN evaluated_by TEXT;
