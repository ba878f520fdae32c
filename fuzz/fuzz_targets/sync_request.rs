//! Requests of the sync protocol, as a peer sends them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::wire::{self, SyncRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = wire::decode_sync::<SyncRequest>(data) {
        let decoded_again: SyncRequest =
            wire::decode_sync(&wire::encode_sync(&request)).expect("re-encoded request decodes");
        assert_eq!(decoded_again, request);
    }
});
