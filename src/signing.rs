//! The signing key every replica shares, and the tokens it signs: the
//! projector's screen tickets (`/results?screen=…`, the stream reserve) and
//! the phones' device cookies (`ONE_VOTE_PER_DEVICE`). The key is
//! `DEVICE_KEY`, else one generated once and kept in PostgreSQL, so a token
//! signed by one replica is valid on every other. `lib.rs` loads it at
//! start-up; handlers only sign and verify.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::db::{self, DbError};

/// The shortest key accepted, in bytes: HMAC-SHA256's own block of strength.
pub const MIN_KEY_BYTES: usize = 32;
/// The length of a generated key.
const GENERATED_KEY_BYTES: usize = 32;
/// How long a screen ticket admits a screen to the reserve. Each render of a
/// page with a valid ticket signs a fresh one, so a projector that reloads
/// keeps its seat; a link copied off the projector stops working by tomorrow.
pub const SCREEN_TICKET_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest token looked at (a device token is ~110 characters): anything
/// longer is refused before any hashing.
const MAX_TOKEN_CHARS: usize = 200;
/// How long start-up may take to read or store the generated key.
const KEY_LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// What a token is for. Part of the signed text, so a device cookie is never
/// a screen ticket and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Screen,
    Device,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Screen => "screen",
            Purpose::Device => "device",
        }
    }
}

/// A signing key (HMAC-SHA256). `Debug` never prints it.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(***)")
    }
}

/// A `DEVICE_KEY` that is not at least 32 bytes of hex.
pub fn parse_hex_key(hex: &str) -> Result<Vec<u8>, String> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected hex digits (e.g. openssl rand -hex 32)".to_owned());
    }
    let key: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    if key.len() < MIN_KEY_BYTES {
        return Err(format!(
            "{} bytes, at least {MIN_KEY_BYTES} needed (e.g. openssl rand -hex 32)",
            key.len()
        ));
    }
    Ok(key)
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key }
    }

    fn mac(&self, purpose: Purpose, body: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(purpose.tag().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        mac
    }

    /// `purpose.body.signature`: URL-, cookie- and header-safe as long as
    /// `body` is (callers use digits and hex only).
    pub fn sign(&self, purpose: Purpose, body: &str) -> String {
        let tag = self.mac(purpose, body).finalize().into_bytes();
        format!("{}.{body}.{}", purpose.tag(), hex(&tag))
    }

    /// The body of `token` when it was signed with this key for `purpose`.
    /// The comparison takes the same time wherever the signature differs.
    pub fn verify<'t>(&self, purpose: Purpose, token: &'t str) -> Option<&'t str> {
        if token.len() > MAX_TOKEN_CHARS {
            return None;
        }
        let rest = token.strip_prefix(purpose.tag())?.strip_prefix('.')?;
        let (body, signature) = rest.rsplit_once('.')?;
        let signature = unhex(signature)?;
        self.mac(purpose, body)
            .verify_slice(&signature)
            .ok()
            .map(|()| body)
    }

    /// A screen ticket valid for `SCREEN_TICKET_TTL` from `now`.
    pub fn screen_ticket(&self, now: SystemTime) -> String {
        let expires = unix_secs(now + SCREEN_TICKET_TTL);
        self.sign(Purpose::Screen, &expires.to_string())
    }

    /// Whether `ticket` is a screen ticket of this key not expired at `now`.
    pub fn valid_screen_ticket(&self, ticket: &str, now: SystemTime) -> bool {
        self.verify(Purpose::Screen, ticket)
            .and_then(|body| body.parse::<u64>().ok())
            .is_some_and(|expires| unix_secs(now) < expires)
    }

    /// A new device: its id (128 bits from the OS random source, in hex)
    /// and its signed token for the cookie.
    pub fn new_device(&self) -> (String, String) {
        let id = random_hex::<16>();
        let token = self.sign(Purpose::Device, &id);
        (id, token)
    }

    /// The device id of a device token signed with this key.
    pub fn device(&self, token: &str) -> Option<String> {
        self.verify(Purpose::Device, token)
            .filter(|id| is_device_id(id))
            .map(str::to_owned)
    }
}

/// 32 lowercase hex digits, the form `new_device` gives (and the column's check).
pub fn is_device_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // getrandom(2) blocks until the kernel's pool is seeded rather than fail;
    // an error means no random source at all, where no token is safe to sign.
    getrandom::fill(&mut bytes).expect("the OS random source is readable");
    bytes
}

/// `N` bytes from the OS random source, in lowercase hex.
pub fn random_hex<const N: usize>() -> String {
    hex(&random_bytes::<N>())
}

/// The shared key: `configured` (`DEVICE_KEY`) when given, else the one kept
/// in PostgreSQL, generated by whichever replica got there first. Two
/// replicas starting together both try to insert theirs; the conflict keeps
/// the first, and both read back the one stored.
pub async fn load(
    pool: &deadpool_postgres::Pool,
    configured: Option<Vec<u8>>,
) -> Result<Signer, DbError> {
    if let Some(key) = configured {
        return Ok(Signer::new(key));
    }
    let candidate = random_bytes::<GENERATED_KEY_BYTES>().to_vec();
    db::within(KEY_LOAD_TIMEOUT, async {
        let client = pool.get().await?;
        client
            .execute(
                "INSERT INTO signing_keys (name, key) VALUES ('shared', $1)
                 ON CONFLICT (name) DO NOTHING",
                &[&candidate],
            )
            .await?;
        let row = client
            .query_one("SELECT key FROM signing_keys WHERE name = 'shared'", &[])
            .await?;
        Ok(Signer::new(row.try_get(0)?))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(byte: u8) -> Signer {
        Signer::new(vec![byte; 32])
    }

    #[test]
    fn a_token_verifies_only_with_its_key_and_purpose() {
        let token = signer(1).sign(Purpose::Device, "abc");
        assert_eq!(signer(1).verify(Purpose::Device, &token), Some("abc"));
        assert_eq!(signer(2).verify(Purpose::Device, &token), None, "other key");
        assert_eq!(signer(1).verify(Purpose::Screen, &token), None, "purpose");
        let retagged = token.replacen("device", "screen", 1);
        assert_eq!(signer(1).verify(Purpose::Screen, &retagged), None);
        let forged = token.replacen("abc", "abd", 1);
        assert_eq!(signer(1).verify(Purpose::Device, &forged), None);
        for bad in [
            "",
            "device",
            "device.abc",
            "device.abc.zz",
            &"a".repeat(300),
        ] {
            assert_eq!(signer(1).verify(Purpose::Device, bad), None, "{bad}");
        }
    }

    #[test]
    fn screen_tickets_expire_after_a_day() {
        let now = SystemTime::now();
        let ticket = signer(1).screen_ticket(now);
        assert!(signer(1).valid_screen_ticket(&ticket, now));
        let almost = now + SCREEN_TICKET_TTL - Duration::from_secs(2);
        assert!(signer(1).valid_screen_ticket(&ticket, almost));
        assert!(!signer(1).valid_screen_ticket(&ticket, now + SCREEN_TICKET_TTL));
        assert!(!signer(2).valid_screen_ticket(&ticket, now));
        let (_, device) = signer(1).new_device();
        assert!(
            !signer(1).valid_screen_ticket(&device, now),
            "a device is no ticket"
        );
        assert!(
            ticket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        );
    }

    #[test]
    fn device_tokens_carry_a_random_id() {
        let (id, token) = signer(1).new_device();
        assert!(is_device_id(&id), "{id}");
        assert_eq!(signer(1).device(&token), Some(id.clone()));
        assert_ne!(signer(1).new_device().0, id);
        let ticket = signer(1).screen_ticket(SystemTime::now());
        assert_eq!(signer(1).device(&ticket), None);
    }

    #[test]
    fn keys_are_at_least_32_bytes_of_hex() {
        assert_eq!(parse_hex_key(&"ab".repeat(32)), Ok(vec![0xab; 32]));
        assert!(parse_hex_key(&"ab".repeat(31)).is_err());
        assert!(parse_hex_key(&"zz".repeat(32)).is_err());
        assert!(parse_hex_key(&"a".repeat(65)).is_err());
        assert!(format!("{:?}", signer(7)).contains("***"));
    }
}
