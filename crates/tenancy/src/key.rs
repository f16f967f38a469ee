//! API keys: `sy-<key id>.<secret>`.
//!
//! The key id (16 hex digits, 64 random bits) is public: it is what the
//! store looks a key up by and what logs and listings show. The secret is
//! 32 random bytes from the OS-seeded generator, written as 43 characters
//! of URL-safe base64. Only the SHA-256 of the secret is stored. A salted
//! slow hash (argon2, bcrypt) protects low-entropy passwords against
//! guessing; a 256-bit random secret cannot be guessed, so one fast hash is
//! enough and keeps verification in microseconds. Hashes are compared in
//! constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const PREFIX: &str = "sy-";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const ID_CHARS: usize = ID_BYTES * 2;
const SECRET_CHARS: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The OpenAI routes, and reading the key's own tenant's usage.
    Inference,
    /// The admin API: tenants, keys, every tenant's usage, models, routes.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inference" => Some(Self::Inference),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scopes as stored: sorted, comma-separated. Unknown names are dropped
/// (a newer replica's scope means nothing to an older one).
pub fn scopes_from_str(s: &str) -> Vec<Scope> {
    let mut v: Vec<Scope> = s.split(',').filter_map(Scope::parse).collect();
    v.sort();
    v.dedup();
    v
}

pub fn scopes_to_string(scopes: &[Scope]) -> String {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// The plaintext of a key, shown once when it is made. `Debug` shows only
/// the public part; there is no `Display`, so reading the secret takes an
/// explicit [`ApiKeySecret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let public = self.0.split_once('.').map_or("sy-?", |(p, _)| p);
        write!(f, "ApiKeySecret({public}.***)")
    }
}

/// A key taken apart: its id and the SHA-256 of its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub id: String,
    pub secret_sha256: [u8; 32],
}

impl std::fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A new key: the plaintext to show once, and what to store.
pub fn generate() -> (ApiKeySecret, ParsedKey) {
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    let mut rng = rand::rng();
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = to_hex(&id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let parsed = ParsedKey {
        secret_sha256: sha256(&secret),
        id: id.clone(),
    };
    (ApiKeySecret(format!("{PREFIX}{id}.{secret}")), parsed)
}

/// Takes a key apart, refusing anything not shaped like one of ours, so a
/// malformed key never costs a lookup.
pub fn parse(key: &str) -> Option<ParsedKey> {
    let (id, secret) = key.strip_prefix(PREFIX)?.split_once('.')?;
    let id_ok = id.len() == ID_CHARS && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !id_ok || secret.len() != SECRET_CHARS {
        return None;
    }
    if !is_canonical_secret(secret) {
        return None;
    }
    Some(ParsedKey {
        id: id.to_string(),
        secret_sha256: sha256(secret),
    })
}

/// Whether `secret` is the URL-safe, unpadded base64 of exactly
/// [`SECRET_BYTES`] bytes, as the `base64` crate's strict decoder would
/// accept it, without decoding: only the text is hashed. 43 characters
/// carry 258 bits, so the last one's two low bits must be zero.
fn is_canonical_secret(secret: &str) -> bool {
    fn sextet(b: u8) -> Option<u8> {
        match b {
            b'A'..=b'Z' => Some(b - b'A'),
            b'a'..=b'z' => Some(b - b'a' + 26),
            b'0'..=b'9' => Some(b - b'0' + 52),
            b'-' => Some(62),
            b'_' => Some(63),
            _ => None,
        }
    }
    let bytes = secret.as_bytes();
    bytes.len() == SECRET_CHARS
        && bytes.iter().all(|&b| sextet(b).is_some())
        && bytes.last().and_then(|&b| sextet(b)).is_some_and(|v| v & 0b11 == 0)
}

/// Adopts a key given from outside (the environment) after checking its shape.
pub fn adopt(key: &str) -> Option<(ApiKeySecret, ParsedKey)> {
    parse(key).map(|p| (ApiKeySecret(key.to_string()), p))
}

/// True when `stored` (hex, from the database) is the hash of this key's
/// secret; constant time in the hash bytes.
pub fn verify(key: &ParsedKey, stored_hex: &str) -> bool {
    match sha256_from_hex(stored_hex) {
        Some(stored) => bool::from(stored.ct_eq(&key.secret_sha256)),
        None => false,
    }
}

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored hash (64 hex digits) as bytes, without allocating: this runs
/// on every authenticated request.
fn sha256_from_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = u8::try_from(digit(pair[0])? << 4 | digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let (plain, stored) = generate();
        let text = plain.expose();
        assert!(
            text.starts_with("sy-") && text.len() == 3 + 16 + 1 + 43,
            "{}",
            text.len()
        );
        let parsed = parse(text).unwrap();
        assert_eq!(parsed, stored);
        assert!(verify(&parsed, &to_hex(&stored.secret_sha256)));
        let (other, _) = generate();
        assert_ne!(other.expose(), text);
        assert!(!verify(&parse(other.expose()).unwrap(), &to_hex(&stored.secret_sha256)));
    }

    #[test]
    fn the_secret_check_accepts_what_the_strict_decoder_accepts() {
        let strict = |s: &str| URL_SAFE_NO_PAD.decode(s).is_ok_and(|b| b.len() == SECRET_BYTES);
        let (plain, _) = generate();
        let secret = plain.expose().split_once('.').unwrap().1.to_string();
        let head = &secret[..SECRET_CHARS - 1];
        // Every possible last character (two low bits set or not), a bad
        // character anywhere, and wrong lengths.
        let mut cases: Vec<String> = (0u8..=255)
            .filter(u8::is_ascii_graphic)
            .map(|c| format!("{head}{}", c as char))
            .collect();
        cases.extend((0..SECRET_CHARS).map(|i| format!("{}={}", &secret[..i], &secret[i + 1..])));
        cases.extend([secret[1..].to_string(), format!("{secret}A"), String::new()]);
        for case in &cases {
            assert_eq!(is_canonical_secret(case), strict(case), "{case:?}");
        }
        assert!(
            cases.iter().filter(|c| strict(c)).count() >= 16,
            "the cases include good secrets"
        );
    }

    #[test]
    fn malformed_keys_are_refused_without_a_lookup() {
        let (plain, _) = generate();
        let good = plain.expose();
        let (public, secret) = good.split_once('.').unwrap();
        for bad in [
            "",
            "sk-abc",
            "sy-",
            public,
            &good[1..],
            &format!("{good}x"),
            &format!("{public}.{}", &secret[1..]),
            &format!("{}.{secret}", public.to_uppercase()),
            &format!("{public}.{}!", &secret[1..]),
        ] {
            assert!(parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let (plain, parsed) = generate();
        let secret = plain.expose().split_once('.').unwrap().1.to_string();
        let shown = format!("{plain:?} {parsed:?}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(shown.contains(&parsed.id));
    }

    #[test]
    fn scopes_round_trip_sorted() {
        let s = scopes_to_string(&[Scope::Admin, Scope::Inference, Scope::Admin]);
        assert_eq!(s, "inference,admin");
        assert_eq!(
            scopes_from_str("admin,bogus,inference"),
            [Scope::Inference, Scope::Admin]
        );
        assert!(!verify(&parse(generate().0.expose()).unwrap(), "zz"));
    }
}
