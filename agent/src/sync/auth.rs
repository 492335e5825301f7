//! The cluster secret and the proofs of it that open a replication
//! connection. Each side sends a fresh nonce; each proves the secret with
//! HMAC-SHA256 over its role and both nonces, so neither a listener nor a
//! replayed handshake can open a connection. The secret is read from a
//! file, never logged (its `Debug` says only its length) and proofs are
//! compared in constant time.

use std::{fmt, path::Path};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::wire::{Nonce, Proof};

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET: usize = 16;

/// Who proves: the side that connects (sends its flows) or the side that
/// accepts (installs them). Part of the proof, so one side's proof is never
/// valid for the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Sender => b"vipx-sync sender",
            Self::Receiver => b"vipx-sync receiver",
        }
    }
}

/// Why a secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the cluster secret {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster secret {path} is {len} bytes long; at least {MIN_SECRET} are needed")]
    Short { path: String, len: usize },
}

/// The cluster secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Reads the secret from `path` (surrounding whitespace, such as a final
    /// newline, is not part of it).
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: shown.clone(),
            source,
        })?;
        let secret = bytes.trim_ascii().to_vec();
        if secret.len() < MIN_SECRET {
            return Err(SecretError::Short {
                path: shown,
                len: secret.len(),
            });
        }
        Ok(Self(secret))
    }

    /// The secret, to present it (the API's bearer token). Never log it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// A secret given as bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    fn mac(&self, role: Role, mine: &Nonce, theirs: &Nonce) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(role.label());
        mac.update(mine);
        mac.update(theirs);
        mac
    }

    /// `role`'s proof, over the nonce it sent and the one it received.
    pub fn prove(&self, role: Role, sent: &Nonce, received: &Nonce) -> Proof {
        self.mac(role, sent, received)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `proof` is `role`'s, over the nonce it sent (`their`) and the
    /// one it received (`ours`); compared in constant time.
    pub fn verify(&self, role: Role, their: &Nonce, ours: &Nonce, proof: &Proof) -> bool {
        self.mac(role, their, ours).verify_slice(proof).is_ok()
    }
}

impl Secret {
    /// Whether `presented` is the secret itself (an API bearer token): both
    /// go through one HMAC and the digests are compared in constant time,
    /// so neither the content nor the length of the secret leaks through
    /// the time a refusal takes.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest = |bytes: &[u8]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"vipx api bearer")
                .expect("HMAC takes a key of any length");
            mac.update(bytes);
            mac
        };
        let theirs = digest(presented).finalize().into_bytes();
        digest(&self.0).verify_slice(&theirs).is_ok()
    }
}

/// A fresh nonce from the operating system's generator.
pub fn nonce() -> Nonce {
    let mut nonce = Nonce::default();
    getrandom::fill(&mut nonce).expect("the OS random generator works");
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a cluster secret of enough bytes";

    #[test]
    fn a_bearer_matches_only_the_secret_itself() {
        let secret = Secret::from_bytes(KEY);
        assert!(secret.matches(KEY));
        assert!(!secret.matches(b"a cluster secret of enough byteS"));
        assert!(!secret.matches(&KEY[..KEY.len() - 1]), "a prefix is not it");
        assert!(!secret.matches(b""));
    }

    #[test]
    fn a_proof_holds_only_for_its_role_nonces_and_secret() {
        let secret = Secret::from_bytes(KEY);
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b, "two nonces differ");
        let proof = secret.prove(Role::Sender, &a, &b);
        assert!(secret.verify(Role::Sender, &a, &b, &proof));
        assert!(
            !secret.verify(Role::Receiver, &a, &b, &proof),
            "not valid for the other role"
        );
        assert!(
            !secret.verify(Role::Sender, &b, &a, &proof),
            "not valid with the nonces swapped (a replay)"
        );
        let other = Secret::from_bytes(b"another secret, also long enough");
        assert!(
            !other.verify(Role::Sender, &a, &b, &proof),
            "nor another secret"
        );
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for
        // nothing?" split as label | nonce | nonce does not apply, so check
        // the primitive the proofs use on the RFC's own input.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        let expected: [u8; 32] = [
            0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24, 0x26, 0x08, 0x95,
            0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9,
            0x64, 0xec, 0x38, 0x43,
        ];
        assert_eq!(<[u8; 32]>::from(mac.finalize().into_bytes()), expected);
    }

    #[test]
    fn a_secret_comes_from_a_file_and_is_never_shown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, b"0123456789abcdef0123\n").expect("write");
        let secret = Secret::load(&path).expect("long enough");
        assert_eq!(format!("{secret:?}"), "Secret(20 bytes)");
        std::fs::write(&path, b"short\n").expect("write");
        let err = Secret::load(&path).expect_err("too short");
        assert!(err.to_string().contains("5 bytes"), "{err}");
        assert!(
            !err.to_string().contains("short"),
            "the secret is not in the error: {err}"
        );
        let missing = Secret::load(&dir.path().join("none")).expect_err("missing");
        assert!(missing.to_string().contains("none"), "{missing}");
    }
}
