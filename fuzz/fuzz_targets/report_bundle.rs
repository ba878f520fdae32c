//! Report export files carried back from an air-gapped site, decoded and
//! verified as `patchmesh-signer reports import` does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::bundle::reports::ReportBundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = ReportBundle::decode(data) {
        let _ = bundle.verify();
        let decoded_again =
            ReportBundle::decode(&bundle.encode()).expect("re-encoded file decodes");
        let _ = decoded_again.verify();
    }
});
