//! The pure core: no browser, no clock, no I/O. Everything here builds and tests natively;
//! its unit tests are compiled for the host only, since their property-testing dependency
//! does not build for wasm32.

pub mod api;
pub mod backoff;
pub mod error;
pub mod options;
pub mod outbox;
pub mod reconcile;
pub mod session;
pub mod syncer;
pub mod view;
