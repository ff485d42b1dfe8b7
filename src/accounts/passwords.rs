//! Console passwords: Argon2id hashes in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$…`),
//! with OWASP's parameters, the salt from the OS's random source. Unlike tokens and keys
//! (long random secrets, stored as plain SHA-256), a password is chosen by a person and
//! must be slow to guess from its hash.
//!
//! Setting a password ends every console session of its user and cancels their sign-in
//! links, in the same transaction.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use diesel::prelude::*;

use super::{sessions, user_id, AccountError};
use crate::db::schema::users;
use crate::db::{write_tx, DbConnection};

/// PCI DSS 4.0 (8.3.6) asks for twelve characters at least.
pub const MIN_LENGTH: usize = 12;
/// A cap, so that a megabyte of "password" cannot cost a megabyte of hashing.
pub const MAX_LENGTH: usize = 256;

/// A password a person chose, checked for length only (NIST 800-63B: no composition rules).
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Password, AccountError> {
        let length = raw.chars().count();
        if length < MIN_LENGTH {
            return Err(AccountError::Refused(format!(
                "a password needs at least {MIN_LENGTH} characters"
            )));
        }
        if length > MAX_LENGTH {
            return Err(AccountError::Refused(format!(
                "a password may have at most {MAX_LENGTH} characters"
            )));
        }
        Ok(Password(raw.to_string()))
    }
}

/// The password's Argon2id hash, with a new random salt (tens of milliseconds: not on an
/// event loop).
pub fn hash(password: &Password) -> String {
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.0.as_bytes(), &salt)
        .expect("Argon2 with its default parameters hashes any password")
        .to_string()
}

/// A hash with the same parameters that no password matches (its digest is made up).
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$dY7NdUdVmlsB9UV4GmjKo1Q1WCw0d8d4iLhp0VSVSlI";

/// Whether `attempt` is the password of `stored` (a PHC string). With None (no such user, or
/// no password), a hash is still checked, so that the answer takes as long either way.
pub fn verify(attempt: &str, stored: Option<&str>) -> bool {
    let known = stored.is_some();
    let Ok(parsed) = PasswordHash::new(stored.unwrap_or(DECOY)) else {
        return false;
    };
    let attempt = &attempt.as_bytes()[..attempt.len().min(MAX_LENGTH * 4)];
    let matches = Argon2::default().verify_password(attempt, &parsed).is_ok();
    known && matches
}

/// Sets a user's password (hashed by the caller, off any event loop) and ends their console
/// sessions.
pub fn set(conn: &mut DbConnection, email: &str, hashed: &str) -> Result<(), AccountError> {
    let id = user_id(conn, email)?;
    write_tx(conn, |conn| {
        diesel::update(users::table.find(id))
            .set(users::password_hash.eq(hashed))
            .execute(conn)?;
        sessions::end_all(conn, id)?;
        sessions::cancel_links(conn, id)?;
        Ok::<_, AccountError>(())
    })
}

/// A user's id and password hash by email, for a sign-in (None: no such user).
pub fn lookup(conn: &mut DbConnection, email: &str) -> QueryResult<Option<(i64, Option<String>)>> {
    let email = email.trim().to_lowercase();
    users::table
        .filter(users::email.eq(email))
        .select((users::id, users::password_hash))
        .first(conn)
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let password = Password::parse("correct horse battery").unwrap();
        let stored = hash(&password);
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify("correct horse battery", Some(&stored)));
        assert!(!verify("correct horse batterY", Some(&stored)));
        assert!(!verify("correct horse battery", None));
        assert!(
            PasswordHash::new(DECOY).is_ok(),
            "the decoy costs a real check"
        );
        assert_ne!(stored, hash(&password), "a new salt each time");
    }

    #[test]
    fn short_and_huge_passwords_are_refused() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(MAX_LENGTH + 1)).is_err());
        assert!(Password::parse(&"x".repeat(MIN_LENGTH)).is_ok());
    }
}
