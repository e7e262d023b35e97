-- a text as a template carrier (Aliyun SMS) sends it: the message's kind and its parameters (a JSON object)
    ALTER TABLE notifications ADD COLUMN template TEXT NOT NULL DEFAULT '';
    ALTER TABLE notifications ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
