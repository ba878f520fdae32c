use std::collections::BTreeMap;

use super::*;
use crate::actions::Halt;
use crate::keys::SecretKey;
use crate::root::{Role, RoleKeys, Root};

fn ts(text: &str) -> Timestamp {
    text.parse().expect("valid time")
}

fn root_body(key: &SecretKey, version: u64) -> Root {
    let mut root = Root {
        fleet: "ships".into(),
        version,
        issued: ts("2027-01-01T00:00:00Z"),
        expires: ts("2030-01-01T00:00:00Z"),
        keys: BTreeMap::new(),
        roles: BTreeMap::new(),
    };
    root.keys.insert(key.id(), key.public());
    for role in Role::ALL {
        root.roles.insert(
            role,
            RoleKeys {
                keys: vec![key.id()],
                threshold: 1,
            },
        );
    }
    root
}

struct Fixture {
    roots: Vec<Signed>,
    index: Signed,
    objects: Vec<Signed>,
    chunks: Vec<Vec<u8>>,
}

/// Two root versions (the second rotates to a new key), two objects and
/// three chunks, signed with the newest key.
fn fixture() -> Fixture {
    let old = SecretKey::generate();
    let new = SecretKey::generate();
    let roots = vec![
        Signed::sign(&root_body(&old, 1), &[&old]),
        Signed::sign(&root_body(&new, 2), &[&old, &new]),
    ];
    let objects: Vec<Signed> = ["pilot", "broad"]
        .iter()
        .map(|wave| {
            let halt = Halt {
                policy: "p".into(),
                wave: Some(wave.to_string()),
                reason: "test".into(),
                revision: 1,
                issued: ts("2027-02-01T00:00:00Z"),
                expires: ts("2028-01-01T00:00:00Z"),
            };
            Signed::sign(&halt, &[&new])
        })
        .collect();
    let chunks = vec![vec![1u8; 40], vec![2u8; 17], Vec::new()];
    let body = BundleIndex {
        fleet: "ships".into(),
        revision: 7,
        issued: ts("2027-02-02T00:00:00Z"),
        expires: ts("2027-03-01T00:00:00Z"),
        since: None,
        roots: roots.iter().map(ObjectEntry::of).collect(),
        objects: objects.iter().map(ObjectEntry::of).collect(),
        chunks: chunks
            .iter()
            .map(|c| ChunkEntry {
                hash: Hash::of(c),
                size: c.len() as u32,
            })
            .collect(),
    };
    let index = Signed::sign(&body, &[&new]);
    Fixture {
        roots,
        index,
        objects,
        chunks,
    }
}

fn write(fixture: &Fixture) -> Vec<u8> {
    let mut writer = BundleWriter::new(Vec::new(), &fixture.roots, &fixture.index).expect("header");
    for object in &fixture.objects {
        writer.write_object(object).expect("object");
    }
    for chunk in &fixture.chunks {
        writer.write_chunk(chunk).expect("chunk");
    }
    let (bytes, written) = writer.finish().expect("finish");
    assert_eq!(written, bytes.len() as u64);
    bytes
}

/// Objects and chunks returned by a full read.
#[derive(Debug)]
struct Contents {
    objects: Vec<Signed>,
    chunks: Vec<Vec<u8>>,
}

/// Reads every record without checking signatures.
fn read_structure(bytes: &[u8]) -> Result<(), BundleError> {
    let mut reader = BundleReader::open(bytes)?;
    while reader.next_object()?.is_some() {}
    while reader.next_chunk()?.is_some() {}
    reader.finish()
}

/// Reads a bundle and verifies it the way an importer does: the root chain
/// from its first version, the index and every object under the newest root.
fn read_and_verify(bytes: &[u8]) -> Result<Contents, String> {
    let mut reader = BundleReader::open(bytes).map_err(|e| e.to_string())?;
    let (first, rest) = reader.roots().split_first().ok_or("no roots")?;
    let mut root = Root::verify_initial(first).map_err(|e| e.to_string())?;
    for next in rest {
        root = root.verify_successor(next).map_err(|e| e.to_string())?;
    }
    let now = ts("2027-02-10T00:00:00Z");
    let index: BundleIndex = reader
        .index()
        .verify(&root, now, "test")
        .map_err(|e| e.to_string())?;
    if index.fleet != root.fleet {
        return Err("other fleet".into());
    }
    let mut objects = Vec::new();
    while let Some(object) = reader.next_object().map_err(|e| e.to_string())? {
        root.check_threshold(object.kind.role(), &object)
            .map_err(|e| e.to_string())?;
        objects.push(object);
    }
    let mut chunks = Vec::new();
    while let Some((_, chunk)) = reader.next_chunk().map_err(|e| e.to_string())? {
        chunks.push(chunk);
    }
    reader.finish().map_err(|e| e.to_string())?;
    Ok(Contents { objects, chunks })
}

#[test]
fn round_trip_returns_everything() {
    let fixture = fixture();
    let bytes = write(&fixture);
    let contents = read_and_verify(&bytes).expect("verifies");
    assert_eq!(contents.objects, fixture.objects);
    assert_eq!(contents.chunks, fixture.chunks);
}

#[test]
fn every_truncation_is_rejected() {
    let bytes = write(&fixture());
    for cut in 0..bytes.len() {
        let err = read_structure(&bytes[..cut]).expect_err("truncated bundle accepted");
        assert!(
            matches!(err, BundleError::Truncated { offset, .. } if offset == cut as u64),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn every_flipped_byte_is_rejected() {
    let bytes = write(&fixture());
    for position in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[position] ^= 0x20;
        assert!(
            read_and_verify(&damaged).is_err(),
            "flip at byte {position} was accepted"
        );
    }
}

#[test]
fn wrong_magic_is_rejected() {
    let mut bytes = write(&fixture());
    bytes[..8].copy_from_slice(b"PKZIP\0\0\0");
    let err = BundleReader::open(bytes.as_slice())
        .err()
        .expect("rejected");
    assert!(matches!(err, BundleError::BadMagic { .. }), "{err}");
}

#[test]
fn oversized_length_is_rejected_before_reading() {
    let mut bytes = write(&fixture());
    // The first root record's length field follows magic, version and tag.
    bytes[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = BundleReader::open(bytes.as_slice())
        .err()
        .expect("rejected");
    assert!(
        matches!(
            err,
            BundleError::Oversize {
                offset: 12,
                what: "root",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn object_not_in_index_is_rejected() {
    let fixture = fixture();
    let mut bytes = write(&fixture);

    // Splice one more object record in front of the first chunk.
    let extra = fixture.objects[0].to_bytes();
    let mut record = vec![TAG_OBJECT];
    record.extend_from_slice(&(extra.len() as u32).to_le_bytes());
    record.extend_from_slice(&extra);
    let chunks_at = bytes.len() - 5 - fixture.chunks.iter().map(|c| c.len() + 5).sum::<usize>();
    bytes.splice(chunks_at..chunks_at, record);

    let err = read_and_verify(&bytes).expect_err("extra object accepted");
    assert!(err.contains("does not match the index"), "{err}");
}

#[test]
fn missing_chunk_is_rejected() {
    let mut fixture = fixture();
    let dropped = fixture.chunks.pop().expect("has chunks");
    let mut writer = BundleWriter::new(Vec::new(), &fixture.roots, &fixture.index).expect("header");
    for object in &fixture.objects {
        writer.write_object(object).expect("object");
    }
    for chunk in &fixture.chunks {
        writer.write_chunk(chunk).expect("chunk");
    }
    assert!(
        writer.finish().is_err(),
        "writer finished without every chunk"
    );

    // Build the same file by hand with the end record after two chunks.
    fixture.chunks.push(dropped);
    let full = write(&fixture);
    let mut short = full[..full.len() - 5 - 5].to_vec();
    short.extend_from_slice(&[TAG_END, 0, 0, 0, 0]);
    let err = read_and_verify(&short).expect_err("missing chunk accepted");
    assert!(err.contains("lists 3"), "{err}");
}

#[test]
fn writer_rejects_object_out_of_order() {
    let fixture = fixture();
    let mut writer = BundleWriter::new(Vec::new(), &fixture.roots, &fixture.index).expect("header");
    let err = writer.write_object(&fixture.objects[1]).unwrap_err();
    assert!(matches!(err, BundleError::OutOfOrder(_)), "{err}");
}

#[test]
fn trailing_data_is_rejected() {
    let mut bytes = write(&fixture());
    bytes.push(0);
    let err = read_and_verify(&bytes).expect_err("trailing data accepted");
    assert!(err.contains("after the end"), "{err}");
}
