-- Runs once, when the server's data volume is new: a little data to export and import.
CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
INSERT INTO notes (body) VALUES ('hello'), ('world');
