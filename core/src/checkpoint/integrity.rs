//! Checksums of checkpoint objects: a bit flipped on disk or an edited file must not be
//! restored as if it were what the pipeline wrote.

use sha2::{Digest, Sha256};
use std::fmt::Write;

const SHA256: &str = "sha256:";

/// The checksum of `bytes`, tagged with its algorithm so that another one can be added later
/// without guessing what an old manifest holds.
pub(crate) fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(SHA256.len() + 2 * digest.len());
    out.push_str(SHA256);
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Checks `bytes` against `expected`; the error says what differs.
pub(crate) fn verify(expected: &str, bytes: &[u8]) -> Result<(), String> {
    if !expected.starts_with(SHA256) {
        return Err(format!(
            "has a checksum of an unknown kind in the manifest (`{expected}`)"
        ));
    }
    let actual = checksum(bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(format!(
            "does not match its checksum (expected {expected}, found {actual})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: a checksum tells any change of content apart, and names its algorithm.
    #[test]
    fn a_changed_byte_changes_the_checksum() {
        let a = checksum(b"{\"views\":154}");
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
        assert!(verify(&a, b"{\"views\":154}").is_ok());
        let e = verify(&a, b"{\"views\":254}").unwrap_err();
        assert!(e.contains(&a), "{e}");
        assert!(verify("md5:00", b"x").unwrap_err().contains("unknown kind"));
    }
}
