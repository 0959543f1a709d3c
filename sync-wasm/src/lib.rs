//! Placeholder; the sync module lands here.
