//! Manifest bodies: the payload of a signed manifest decoded and validated
//! as a node does before it plans a download from it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::{Body, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = postcard::from_bytes::<Manifest>(data) else {
        return;
    };
    if manifest.validate().is_ok() {
        // A valid manifest's chunk arithmetic must not overflow or panic.
        for index in 0..manifest.chunks.len() {
            let _ = manifest.chunk_len(index);
        }
        let _ = Manifest::chunk_count_for(manifest.size, manifest.chunk_size);
        let _ = manifest.slot();
        let _ = manifest.patch_ref();
    }
});
