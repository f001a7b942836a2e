//! Webhook secrets at rest: sealed with AES-256-GCM under a master key before they reach the
//! log or a snapshot, opened only in memory when an attempt is signed.
//!
//! A sealed secret reads `enc1:{key id}:{hex(nonce | ciphertext | tag)}`; the key id (the first
//! four bytes of SHA-256 of the key) says which key sealed it, so secrets sealed under a
//! previous key can still be opened and are resealed under the current one at startup.

use crate::ids::RandomSource;
use crate::EngineError;
use hallway_domain::SealedSecret;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

const PREFIX: &str = "enc1:";

/// A webhook's signing secret in plain text (`whsec_...`): the HMAC key, shown to the user
/// once on create and rotate. Debug output is redacted; [`Secret::expose`] says where it leaks.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its text.
    pub fn new(text: String) -> Self {
        Secret(text)
    }

    /// The secret's text, to show the user or to sign with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A 256-bit master key. Debug output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        // Without a working random source no secret can be protected.
        getrandom::getrandom(&mut k).expect("the operating system's random source failed");
        MasterKey(k)
    }

    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterKey(bytes)
    }

    /// The key's short public id (hex of the first 4 bytes of its SHA-256).
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..4])
    }

    /// Reads a key file (64 hex digits).
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Config(format!("master key file {}: {e}", path.display())))?;
        let mut k = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut k).map_err(|_| {
            EngineError::Config(format!(
                "master key file {} must hold 64 hex digits",
                path.display()
            ))
        })?;
        Ok(MasterKey(k))
    }

    /// Reads a key file, or creates it (mode 0600) with a fresh key when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, EngineError> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let err = |e: std::io::Error| {
            EngineError::Config(format!("master key file {}: {e}", path.display()))
        };
        let mut f = opts.open(path).map_err(err)?;
        use std::io::Write;
        f.write_all(format!("{}\n", hex::encode(key.0)).as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(err)?;
        Ok(key)
    }
}

/// Seals and opens secrets: the current key seals, any known key opens.
pub(crate) struct SecretBox {
    keys: Vec<(String, LessSafeKey)>,
    /// Where sealing nonces come from.
    random: Arc<dyn RandomSource>,
}

/// How a stored secret relates to the keys.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sealing {
    /// Sealed under the current key.
    Current,
    /// Readable, but sealed under a previous key or not sealed at all: reseal it.
    Stale,
}

impl SecretBox {
    /// `current` seals; `previous` keys only open; nonces come from `random`.
    pub(crate) fn new(
        current: &MasterKey,
        previous: &[MasterKey],
        random: Arc<dyn RandomSource>,
    ) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|k| {
                // A 32-byte key always fits AES-256.
                let unbound = UnboundKey::new(&AES_256_GCM, &k.0).expect("32-byte AES key");
                (k.id(), LessSafeKey::new(unbound))
            })
            .collect();
        SecretBox { keys, random }
    }

    /// Seals a plaintext secret under the current key.
    pub(crate) fn seal(&self, plaintext: &str) -> SealedSecret {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce);
        let mut buf = plaintext.as_bytes().to_vec();
        // Sealing in memory with a valid key and nonce cannot fail.
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(id.as_bytes()),
            &mut buf,
        )
        .expect("AES-GCM seal");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        SealedSecret(format!("{PREFIX}{id}:{}", hex::encode(out)))
    }

    /// Opens a stored secret; `None` if no known key opens it.
    pub(crate) fn open(&self, stored: &SealedSecret) -> Option<(String, Sealing)> {
        let Some(rest) = stored.0.strip_prefix(PREFIX) else {
            // Written before secrets were sealed: readable, to be resealed.
            return Some((stored.0.clone(), Sealing::Stale));
        };
        let (id, body) = rest.split_once(':')?;
        let position = self.keys.iter().position(|(kid, _)| kid == id)?;
        let key = &self.keys[position].1;
        let raw = hex::decode(body).ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(id.as_bytes()), &mut buf)
            .ok()?;
        let text = String::from_utf8(plain.to_vec()).ok()?;
        let sealing = if position == 0 {
            Sealing::Current
        } else {
            Sealing::Stale
        };
        Some((text, sealing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_a_known_key_and_hide_the_plaintext() {
        let current = MasterKey::generate();
        let os = || Arc::new(crate::ids::OsRandom);
        let b = SecretBox::new(&current, &[], os());
        let sealed = b.seal("whsec_plain_text_secret");
        assert!(!sealed.0.contains("whsec_plain_text_secret"));
        assert_eq!(
            b.open(&sealed),
            Some(("whsec_plain_text_secret".to_owned(), Sealing::Current))
        );
        let other = SecretBox::new(&MasterKey::generate(), &[], os());
        assert_eq!(other.open(&sealed), None);
        let rotated = SecretBox::new(&MasterKey::generate(), &[current], os());
        assert_eq!(
            rotated.open(&sealed),
            Some(("whsec_plain_text_secret".to_owned(), Sealing::Stale))
        );
        let mut tampered = sealed.0.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(b.open(&SealedSecret(tampered)), None);
        assert_eq!(b.open(&SealedSecret("enc1:zz".into())), None);
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k1 = MasterKey::load_or_create(&path).unwrap();
        let k2 = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(k1, k2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            MasterKey::load(&path),
            Err(EngineError::Config(_))
        ));
    }
}
