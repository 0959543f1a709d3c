-- Nothing changes on Postgres. SQLite's migration 0014 stops noting new messages for its
-- background search indexer (a mark of the messages the indexer has seen instead);
-- Postgres has no such indexer: its search vectors are columns of the rows a save
-- writes. This file keeps the two lists in step.
SELECT 1;
