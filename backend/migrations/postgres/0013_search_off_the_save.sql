-- Nothing changes on Postgres. SQLite's migration 0013 moves writing the search index out
-- of the save's transaction (FTS5 entries live in tables of their own, written apart from
-- the rows); Postgres' search vectors are columns of the rows a save writes anyway, kept
-- by the triggers of migrations 0009 and 0011. This file keeps the two lists in step.
SELECT 1;
