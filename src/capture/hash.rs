//! Prefix block ids: the prompt text cut into blocks of [`BLOCK_CHARS`] characters, each block's
//! id the first 52 bits of HMAC-SHA256(key, all text up to and including that block).
//!
//! Equal leading ids mean equal leading text, and an id reveals nothing of the text without the
//! key. 52 bits keep every id exact as a JSON number in any reader (doubles hold 53).
//!
//! HMAC (RFC 2104) is written out here over the `sha2` already in the tree: the `hmac` crate
//! that matches our `sha2` 0.10 is 0.12, and 0.13 would pull a second `sha2` and `digest`. The
//! RFC 4231 vectors in the tests pin it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// Characters (Unicode scalar values) per prefix block.
pub const BLOCK_CHARS: usize = 2048;

/// Bytes of a newly created key.
const KEY_BYTES: usize = 32;

/// The secret that keys the block ids. Kept in a file the user controls, so ids from two
/// captures with the same key can be compared, and nobody without it can test a guessed text.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from raw bytes (tests, embedding).
    pub fn from_bytes(bytes: &[u8]) -> Key {
        Key(bytes.to_vec())
    }

    /// Read the key at `path` (hex), or create it there with a random key, mode 0600. Returns
    /// the key and whether it was created.
    pub fn load_or_create(path: &Path) -> anyhow::Result<(Key, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let key = Key::from_hex(text.trim())
                    .with_context(|| format!("reading the capture key '{}'", path.display()))?;
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "the capture key is readable by others than its owner");
                }
                Ok((key, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; KEY_BYTES];
                rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("creating the capture key '{}'", path.display()))?;
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(file, "{hex}").with_context(|| format!("writing the capture key '{}'", path.display()))?;
                Ok((Key(bytes.to_vec()), true))
            }
            Err(e) => Err(e).with_context(|| format!("reading the capture key '{}'", path.display())),
        }
    }

    fn from_hex(text: &str) -> anyhow::Result<Key> {
        if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("the key is not hex (expected {} hex digits)", KEY_BYTES * 2)
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("checked hex digits"))
            .collect();
        if bytes.len() < 16 {
            bail!("the key has {} bytes; at least 16 are needed", bytes.len())
        }
        Ok(Key(bytes))
    }

    /// The inner and outer hash states with the key already absorbed (RFC 2104).
    fn states(&self) -> (Sha256, Sha256) {
        let mut block = [0u8; 64];
        if self.0.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(&self.0));
        } else {
            block[..self.0.len()].copy_from_slice(&self.0);
        }
        let mut inner = Sha256::new();
        inner.update(block.map(|b| b ^ 0x36));
        let mut outer = Sha256::new();
        outer.update(block.map(|b| b ^ 0x5c));
        (inner, outer)
    }

    /// HMAC-SHA256(key, message).
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let (mut inner, outer) = self.states();
        inner.update(message);
        finish(inner, outer)
    }

    /// One id per block of [`BLOCK_CHARS`] characters of `text` (the last block may be
    /// shorter); empty text gives no ids. One pass: the running inner hash is cloned at each
    /// block boundary.
    pub fn block_ids(&self, text: &str) -> Vec<u64> {
        let (mut inner, outer) = self.states();
        let mut ids = Vec::with_capacity(text.len() / BLOCK_CHARS + 1);
        let mut start = 0;
        let mut chars = 0;
        for (at, _) in text.char_indices() {
            if chars == BLOCK_CHARS {
                inner.update(&text.as_bytes()[start..at]);
                ids.push(id(finish(inner.clone(), outer.clone())));
                start = at;
                chars = 0;
            }
            chars += 1;
        }
        if start < text.len() {
            inner.update(&text.as_bytes()[start..]);
            ids.push(id(finish(inner, outer)));
        }
        ids
    }
}

fn finish(inner: Sha256, mut outer: Sha256) -> [u8; 32] {
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The first 52 bits of a MAC, big-endian.
fn id(mac: [u8; 32]) -> u64 {
    u64::from_be_bytes(mac[..8].try_into().expect("8 bytes")) >> 12
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than the block).
    #[test]
    fn hmac_matches_rfc_4231() {
        let k = Key::from_bytes(&[0x0b; 20]);
        assert_eq!(hex(&k.mac(b"Hi There")), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        let k = Key::from_bytes(b"Jefe");
        assert_eq!(
            hex(&k.mac(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let k = Key::from_bytes(&[0xaa; 131]);
        assert_eq!(
            hex(&k.mac(b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn block_ids_are_macs_of_each_prefix() {
        let k = Key::from_bytes(b"0123456789abcdef");
        // Multi-byte characters: blocks count characters, not bytes.
        let text: String = "é".repeat(BLOCK_CHARS * 2 + 5);
        let ids = k.block_ids(&text);
        assert_eq!(ids.len(), 3);
        let prefix = |n: usize| text.chars().take(n).collect::<String>();
        assert_eq!(ids[0], id(k.mac(prefix(BLOCK_CHARS).as_bytes())));
        assert_eq!(ids[1], id(k.mac(prefix(BLOCK_CHARS * 2).as_bytes())));
        assert_eq!(ids[2], id(k.mac(text.as_bytes())));
        assert!(ids.iter().all(|&i| i < 1 << 52));
        assert!(k.block_ids("").is_empty());
        assert_eq!(k.block_ids("a").len(), 1);
        assert_eq!(k.block_ids(&"a".repeat(BLOCK_CHARS)).len(), 1);
    }

    #[test]
    fn shared_prefixes_share_leading_ids_and_keys_matter() {
        let k = Key::from_bytes(b"0123456789abcdef");
        let system = "s".repeat(BLOCK_CHARS * 2);
        let a = k.block_ids(&format!("{system}question one"));
        let b = k.block_ids(&format!("{system}another question"));
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        let other = Key::from_bytes(b"fedcba9876543210").block_ids(&format!("{system}question one"));
        assert!(a.iter().zip(&other).all(|(x, y)| x != y));
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capture.key");
        let (k1, created) = Key::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (k2, created) = Key::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.mac(b"x"), k2.mac(b"x"));
        std::fs::write(&path, "zz").unwrap();
        let err = format!("{:#}", Key::load_or_create(&path).unwrap_err());
        assert!(err.contains("not hex"), "{err}");
    }
}
