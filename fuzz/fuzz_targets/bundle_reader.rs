//! Air-gap bundle files, as `patchmesh-node bundle import` streams them:
//! the header, root chain and index, then every object and chunk record,
//! then the end record.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::bundle::BundleReader;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = BundleReader::open(data) else {
        return;
    };
    let _ = (reader.roots().len(), reader.index().id(), reader.body());
    while let Ok(Some(object)) = reader.next_object() {
        let _ = object.id();
    }
    while let Ok(Some((entry, bytes))) = reader.next_chunk() {
        let _ = (entry, bytes.len());
    }
    let _ = reader.offset();
    let _ = reader.finish();
});
