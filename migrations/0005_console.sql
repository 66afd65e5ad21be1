-- The console: each person's display preferences (language, theme), and where each task of a
-- workflow sits on the editor's canvas (not part of the document, so not versioned).

ALTER TABLE users ADD COLUMN preferences jsonb NOT NULL DEFAULT '{}';

ALTER TABLE workflows ADD COLUMN layout jsonb;
