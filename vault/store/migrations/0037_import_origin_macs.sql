-- The import origin decides whether a re-run import may overwrite a stored record ("written by
-- the last import, not edited in cvault since": docs/import.md, "Writing"), so it is a decision row
-- (row-MAC coverage 5; docs/format.md "Row MACs"; review4 R4-7): it carries a row MAC over
-- record_id, version and source. The times and the importer's name decide nothing.
ALTER TABLE import_origins ADD COLUMN mac BLOB;
