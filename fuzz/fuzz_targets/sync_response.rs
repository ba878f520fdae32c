//! Responses of the sync protocol, as a peer sends them. The chunk bitmap of
//! a `Have` response is read at every index a manifest may list.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::limits;
use patchmesh_protocol::wire::{self, bitmap, SyncResponse};

fuzz_target!(|data: &[u8]| {
    let Ok(response) = wire::decode_sync::<SyncResponse>(data) else {
        return;
    };
    let decoded_again: SyncResponse =
        wire::decode_sync(&wire::encode_sync(&response)).expect("re-encoded response decodes");
    assert_eq!(decoded_again, response);
    if let SyncResponse::Have(bits) = &response {
        let set_bits = (0..limits::MAX_CHUNKS + 8)
            .filter(|&i| bitmap::get(bits, i))
            .count();
        assert!(set_bits <= bits.len() * 8);
    }
});
