//! Signed envelopes as they arrive by gossip, anti-entropy, the control API
//! or a file. The target parses the envelope, decodes its body as every
//! kind and runs the validation of each kind that has one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchmesh_protocol::actions::{Approval, Halt, Resume, RollbackOrder};
use patchmesh_protocol::enrollment::{Enrollment, Revocation};
use patchmesh_protocol::{Body, Manifest, Policy, Root, Signed};

/// Decodes the body as `B` and computes what a store derives from it.
fn decode_as<B: Body>(signed: &Signed) -> Option<B> {
    let body = signed.decode_body::<B>().ok()?;
    let _ = (body.slot(), body.revision(), body.issued(), body.expires());
    Some(body)
}

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = Signed::from_bytes(data) else {
        return;
    };

    // Whatever decodes must encode back to an envelope that decodes the same.
    let decoded_again =
        Signed::from_bytes(&signed.to_bytes()).expect("re-encoded envelope decodes");
    assert_eq!(decoded_again, signed);
    let _ = signed.id();

    if let Some(root) = decode_as::<Root>(&signed) {
        let _ = root.validate();
        let _ = Root::verify_initial(&signed);
    }
    if let Some(manifest) = decode_as::<Manifest>(&signed) {
        let _ = manifest.validate();
    }
    if let Some(policy) = decode_as::<Policy>(&signed) {
        let _ = policy.validate();
    }
    if let Some(enrollment) = decode_as::<Enrollment>(&signed) {
        let _ = enrollment.validate();
    }
    if let Some(revocation) = decode_as::<Revocation>(&signed) {
        let _ = revocation.validate();
    }
    let _ = decode_as::<Approval>(&signed);
    let _ = decode_as::<Halt>(&signed);
    let _ = decode_as::<Resume>(&signed);
    let _ = decode_as::<RollbackOrder>(&signed);
});
