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
    if let Err(FabricError::Invalid(p)) = Fabric::parse(s) {
        assert!(p.line >= 1 && p.line <= s.lines().count() + 1);
        assert!(p.span.offset() + p.span.len() <= s.len());
        assert!(!p.message.is_empty());
    }
}

/// The folder of a fuzz target's checked-in seed corpus (`fuzz/corpus/<target>`).
pub fn corpus_dir(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every file of a fuzz target's seed corpus, so ordinary tests on stable replay what the fuzzer
/// starts from; an empty or missing corpus is an error.
pub fn corpus(target: &str) -> Result<Vec<(std::path::PathBuf, Vec<u8>)>, String> {
    let dir = corpus_dir(target);
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        files.push((path, bytes));
    }
    if files.is_empty() {
        return Err(format!("no corpus in `{}`", dir.display()));
    }
    files.sort();
    Ok(files)
}
