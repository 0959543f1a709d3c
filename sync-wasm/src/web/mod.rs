//! Browser shell (in progress).
