//! Signed node reports, as observers receive them and as reports exports
//! carry them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::SignedReport;

fuzz_target!(|data: &[u8]| {
    let _ = SignedReport::verify_bytes(data);
});
