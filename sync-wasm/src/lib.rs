//! Browser state sync for chatsync.
//!
//! The server owns every chat; this module keeps a read-only copy in the browser fresh by
//! polling `GET /state` (with backoff, paused while the tab is hidden) and merges in the
//! messages the user just sent until the server shows them.
//!
//! Architecture Invariant: [`core`] is pure Rust with no I/O and no notion of time; the
//! wasm shell in `web` only runs timers, `fetch` and events and forwards what happened to
//! the core. See `ARCHITECTURE.md` beside this crate.

pub mod core;

#[cfg(target_arch = "wasm32")]
mod web;

/// The class JavaScript uses, also reachable from Rust for the browser tests.
#[cfg(target_arch = "wasm32")]
pub use web::ChatSync;

/// How values cross into and out of JavaScript (`serde-wasm-bindgen` with the package's
/// settings), for Rust code that builds on the package.
#[cfg(target_arch = "wasm32")]
pub use web::convert;

/// The allocator. The browser downloads it with the module, and talc's WebAssembly build is
/// smaller than the standard library's dlmalloc; the module runs on one thread.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
