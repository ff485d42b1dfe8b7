//! Provider credentials are sealed at rest: a database dump alone reveals no provider secret.
//!
//! Each secret is sealed with XChaCha20-Poly1305 (an AEAD, from RustCrypto) under the
//! server's secret key, with a random 24-byte nonce and the row it belongs to as associated
//! data (so a sealed value copied into another row does not open). The key's id is stored
//! beside each sealed value, so that `cobro secrets rotate` can seal everything again under
//! a new key.
//!
//! The keys come from `COBRO_SECRET_KEY` (64 hex digits; several, comma-separated, while
//! rotating: the first seals, all open). On SQLite without it, a key file is made beside the
//! database at the first start (`cobro.db.key`, mode 0600): back it up with the database,
//! for without it the credentials cannot be read. On PostgreSQL, servers share a database
//! and so must share the key: set `COBRO_SECRET_KEY` on each.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::db::{Backend, DatabaseUrl};
use crate::error::ApiError;

const NONCE_LEN: usize = 24;

/// The server's secret keys: the first seals, every one opens.
pub struct Keyring {
    keys: Vec<RingKey>,
    /// Where the keys came from, for messages.
    pub origin: String,
}

struct RingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// Never prints a key.
impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "Keyring({ids:?} from {})", self.origin)
    }
}

/// A sealed value as stored: the id of the key that sealed it, and hex(nonce ‖ ciphertext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub text: String,
}

impl Keyring {
    /// Keys given as 64 hex digits each.
    pub fn parse(keys: &[String], origin: &str) -> Result<Keyring, String> {
        let keys = keys
            .iter()
            .map(|hex_key| {
                let bytes = hex::decode(hex_key.trim())
                    .ok()
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| format!("{origin}: a secret key is 64 hex digits (32 bytes)"))?;
                Ok(RingKey {
                    id: key_id(&bytes),
                    cipher: XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| e.to_string())?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Keyring {
            keys,
            origin: origin.to_string(),
        })
    }

    /// The server's keys: `COBRO_SECRET_KEY`'s, or on SQLite the key file beside the
    /// database (made now when there is none). On PostgreSQL without the setting, none:
    /// provider credentials cannot be stored, and saying so is the integration's answer.
    pub fn load(configured: &[String], database: &DatabaseUrl) -> Result<Keyring, String> {
        if !configured.is_empty() {
            return Keyring::parse(configured, "COBRO_SECRET_KEY");
        }
        match database.backend {
            Backend::Sqlite => {
                let path = key_file(&database.target);
                let keys = read_or_make_key_file(&path)?;
                Keyring::parse(&keys, &path.display().to_string())
            }
            Backend::Postgres => Ok(Keyring {
                keys: Vec::new(),
                origin: "nowhere (COBRO_SECRET_KEY is not set)".into(),
            }),
        }
    }

    /// The id of the key that seals, if there is one.
    pub fn current(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// Seals `plain` for the row named `context`.
    pub fn seal(&self, context: &str, plain: &str) -> Result<Sealed, ApiError> {
        let key = self.keys.first().ok_or_else(|| {
            ApiError::BadRequest(
                "This server keeps no provider credentials: it has no secret key. Set COBRO_SECRET_KEY (64 hex digits) on every server, then try again.".into(),
            )
        })?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: context.as_bytes(),
        };
        let sealed = key
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .map_err(|_| ApiError::internal("sealing a secret failed"))?;
        Ok(Sealed {
            key_id: key.id.clone(),
            text: hex::encode([&nonce[..], &sealed].concat()),
        })
    }

    /// Opens a value sealed for `context` (an internal error when no key of the ring opens
    /// it: a wrong or lost key, or a value moved from another row).
    pub fn open(&self, context: &str, sealed: &Sealed) -> Result<String, ApiError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "{context} is sealed under key {}, which {} does not hold",
                    sealed.key_id, self.origin
                ))
            })?;
        let bytes = hex::decode(&sealed.text)
            .ok()
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| ApiError::internal(format!("{context}: a sealed value is corrupt")))?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        let plain = key
            .cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| ApiError::internal(format!("{context}: a sealed value does not open")))?;
        String::from_utf8(plain).map_err(ApiError::internal)
    }
}

/// The server's keyring, from a request's app data.
pub fn from_request(
    req: &actix_web::HttpRequest,
) -> Result<actix_web::web::Data<Keyring>, ApiError> {
    req.app_data::<actix_web::web::Data<Keyring>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("no keyring in app data"))
}

/// A key's id: the start of a digest of it, which reveals nothing of the key.
fn key_id(key: &[u8]) -> String {
    let digest = Sha256::digest([b"cobro secret key id:".as_slice(), key].concat());
    hex::encode(&digest[..8])
}

/// A new random key, as 64 hex digits.
pub fn new_key() -> String {
    let key: [u8; 32] = rand::random();
    hex::encode(key)
}

/// The key file of a SQLite database: beside it, with `.key` added.
pub fn key_file(database_path: &str) -> PathBuf {
    PathBuf::from(format!("{database_path}.key"))
}

/// The keys of a key file (one per line, the first seals), making the file with a new key
/// when there is none, readable by its owner only.
fn read_or_make_key_file(path: &Path) -> Result<Vec<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            // Written whole beside it, then linked into place: of two servers starting at
            // once on a new database, one makes the file and the other reads it complete.
            let key = new_key();
            let draft = path.with_extension(format!("key.new-{}", std::process::id()));
            write_key_file(&draft, std::slice::from_ref(&key), false)?;
            let linked = std::fs::hard_link(&draft, path);
            let _ = std::fs::remove_file(&draft);
            match linked {
                Ok(()) => {
                    log::info!(
                        "made a secret key for provider credentials at {} (back it up with the database)",
                        path.display()
                    );
                    Ok(vec![key])
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    read_or_make_key_file(path)
                }
                Err(err) => Err(format!(
                    "cannot write the key file {}: {err}",
                    path.display()
                )),
            }
        }
        Err(err) => Err(format!(
            "cannot read the key file {}: {err}",
            path.display()
        )),
    }
}

/// Writes `keys` to a key file, mode 0600; `new` refuses to replace an existing one.
pub fn write_key_file(path: &Path, keys: &[String], new: bool) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot write the key file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        // An existing file keeps its mode when opened: make it its owner's only.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot protect the key file {}: {e}", path.display()))?;
    }
    let text: String = keys.iter().map(|k| format!("{k}\n")).collect();
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write the key file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_its_row() {
        let (a, b) = (new_key(), new_key());
        let ring = Keyring::parse(std::slice::from_ref(&a), "test").unwrap();
        let sealed = ring.seal("integration int_1", "sk_test_4242").unwrap();
        assert!(!sealed.text.contains("4242") && sealed.key_id == ring.current().unwrap());
        assert_eq!(
            ring.open("integration int_1", &sealed).unwrap(),
            "sk_test_4242"
        );
        // Another row, another key, or a flipped bit: it does not open.
        assert!(ring.open("integration int_2", &sealed).is_err());
        let other = Keyring::parse(std::slice::from_ref(&b), "test").unwrap();
        assert!(other.open("integration int_1", &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped.text.replace_range(
            60..61,
            if &sealed.text[60..61] == "0" {
                "1"
            } else {
                "0"
            },
        );
        assert!(ring.open("integration int_1", &flipped).is_err());
        // While rotating, the new key seals and the old one still opens.
        let rotating = Keyring::parse(&[b, a], "test").unwrap();
        assert_eq!(
            rotating.open("integration int_1", &sealed).unwrap(),
            "sk_test_4242"
        );
        assert_ne!(rotating.seal("x", "y").unwrap().key_id, sealed.key_id);
        // Two seals of one value differ (random nonces).
        assert_ne!(
            ring.seal("x", "y").unwrap().text,
            ring.seal("x", "y").unwrap().text
        );
        assert!(Keyring::parse(&["abc".into()], "test").is_err());
        assert!(format!("{ring:?}").len() < 60, "Debug never prints a key");
    }
}
