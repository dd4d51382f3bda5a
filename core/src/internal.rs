//! Entry points for the fuzz targets, shared with the tests that replay their corpora on stable.

use crate::{
    Acr, Clearance, CourtCode, Fabric, FabricError, PublicKey, Role, Signature, SubjectId, ZoneName,
};

/// Every parser of outside text in this crate; panics only when an invariant breaks.
pub fn fuzz_ids(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = s.parse::<CourtCode>() {
        assert_eq!(c.as_str(), s);
        if let Some(p) = c.parent() {
            assert!(c.is_within(&p));
        }
    }
    if let Ok(id) = s.parse::<SubjectId>() {
        assert_eq!(id.as_str(), s);
    }
    let _ = s.parse::<ZoneName>();
    let _ = s.parse::<Role>();
    let _ = s.parse::<Acr>();
    let _ = s.parse::<Clearance>();
    if let Ok(k) = s.parse::<PublicKey>() {
        assert_eq!(k.to_string().parse::<PublicKey>().ok(), Some(k));
    }
    let _ = s.parse::<Signature>();
}

/// The `fabric.toml` loader: never panics, and points at a line of the text.
pub fn fuzz_fabric(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(FabricError::Invalid { line, .. }) = Fabric::parse(s) {
        assert!(line >= 1 && line <= s.lines().count() + 1);
    }
}
