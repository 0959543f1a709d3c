//! The pure core: no browser, no clock, no I/O. Everything here builds and tests natively.

pub mod api;
pub mod backoff;
pub mod options;
pub mod reconcile;
pub mod syncer;
pub mod view;
