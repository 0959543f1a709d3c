//! Reconcile cost natively: `cargo bench -p chatsync-sync-wasm --bench reconcile`.
//! The same workload runs in Chromium as the `reconcile_benchmark` browser test.

use std::time::Instant;

#[path = "support/fixture.rs"]
mod fixture;

fn main() {
    let origin = Instant::now();
    let figures = fixture::measure(|| origin.elapsed().as_secs_f64() * 1000.0);
    println!("{figures}, native");
}
