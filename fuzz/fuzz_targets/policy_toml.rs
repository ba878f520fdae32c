//! Policy files in the admin's TOML form, parsed and validated as the
//! signer does before signing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::from_toml(text) {
        let _ = policy.validate();
    }
});
