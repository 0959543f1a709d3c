//! Engine tests: real turns with the scripted model on a temporary SQLite store.
