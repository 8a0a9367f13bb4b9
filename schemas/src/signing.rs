//! The signing secret and the Standard Webhooks signature.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Receivers' libraries recognise a Standard Webhooks key by this prefix.
const PREFIX: &str = "whsec_";

/// Shorter keys make HMAC-SHA256 guessable; the spec's own example is 24 bytes.
const MIN_LEN: usize = 24;

/// The spec caps keys at 64 bytes, the SHA-256 block size: longer ones would
/// be hashed down anyway and some receiver libraries refuse them.
const MAX_LEN: usize = 64;

const GENERATED_LEN: usize = 32;

/// The key an endpoint's deliveries are signed with.
///
/// Holds raw key bytes. `Debug` redacts them, so a secret that ends up in a
/// log line or a panic message does not leak; [`SigningSecret::expose`] is the only
/// way to get the key back as text.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

/// Why a text is not a signing secret. The messages never repeat the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a signing secret starts with \"whsec_\"")]
    MissingPrefix,
    #[error("the part after \"whsec_\" is not standard base64 with padding ({0})")]
    Base64(String),
    #[error("the signing secret is {len} bytes long; it needs at least {MIN_LEN}")]
    TooShort { len: usize },
    #[error("the signing secret is {len} bytes long; it may have at most {MAX_LEN}")]
    TooLong { len: usize },
}

impl SigningSecret {
    /// A fresh random key of 32 bytes.
    pub fn generate() -> SigningSecret {
        // ThreadRng is a CSPRNG seeded from the operating system.
        let key: [u8; GENERATED_LEN] = rand::random();
        SigningSecret(key.to_vec())
    }

    /// Reads the `whsec_<base64>` form that [`SigningSecret::expose`] writes.
    pub fn parse(text: &str) -> Result<SigningSecret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| SecretError::Base64(e.to_string()))?;
        match key.len() {
            len if len < MIN_LEN => Err(SecretError::TooShort { len }),
            len if len > MAX_LEN => Err(SecretError::TooLong { len }),
            _ => Ok(SigningSecret(key)),
        }
    }

    /// The key as `whsec_<base64>`, the form receivers paste into their
    /// Standard Webhooks library.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// The `webhook-signature` header value: `v1,` and the base64 of
    /// HMAC-SHA256 over `{message_id}.{timestamp}.{body}`.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// HMAC-SHA256 written out from RFC 2104, so the check does not share
    /// code with the `hmac` crate that `sign` uses.
    fn rfc2104_hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
        const BLOCK: usize = 64;
        let mut block_key = [0u8; BLOCK];
        if key.len() > BLOCK {
            block_key[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block_key[..key.len()].copy_from_slice(key);
        }
        let inner_pad: Vec<u8> = block_key.iter().map(|b| b ^ 0x36).collect();
        let outer_pad: Vec<u8> = block_key.iter().map(|b| b ^ 0x5c).collect();
        let inner = Sha256::new()
            .chain_update(&inner_pad)
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(&outer_pad)
            .chain_update(inner)
            .finalize()
            .into()
    }

    #[test]
    fn signs_the_published_standard_webhooks_vectors() {
        // The vector svix and the Standard Webhooks libraries all test
        // against: matching it is what says a receiver's library accepts us.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // The one in the reference Rust library's own tests.
        let secret = SigningSecret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            secret.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn signature_matches_an_independent_hmac() {
        let secret = SigningSecret::generate();
        let body = b"{\"x\":[1,2,3]}\n\xff not even utf-8";
        let signed = secret.sign("msg_1", -5, body);

        let key = STANDARD.decode(&secret.expose()["whsec_".len()..]).unwrap();
        let mut message = b"msg_1.-5.".to_vec();
        message.extend_from_slice(body);
        let expected = format!(
            "v1,{}",
            STANDARD.encode(rfc2104_hmac_sha256(&key, &message))
        );
        assert_eq!(signed, expected);

        // Any change to id, timestamp or body changes the signature.
        assert_ne!(secret.sign("msg_2", -5, body), signed);
        assert_ne!(secret.sign("msg_1", 5, body), signed);
        assert_ne!(secret.sign("msg_1", -5, b"{}"), signed);
    }

    #[test]
    fn generated_secrets_round_trip_and_differ() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_eq!(a.0.len(), 32);
        assert_ne!(a.0, b.0);
        let text = a.expose();
        assert!(text.starts_with("whsec_"), "{text}");
        assert_eq!(SigningSecret::parse(&text).unwrap().0, a.0);
        assert_eq!(SigningSecret::parse(&text).unwrap().expose(), text);
    }

    #[test]
    fn parse_accepts_the_length_bounds() {
        for len in [24, 64] {
            let text = format!("whsec_{}", STANDARD.encode(vec![7u8; len]));
            assert_eq!(SigningSecret::parse(&text).unwrap().0.len(), len);
        }
    }

    #[test]
    fn parse_refuses_bad_input_and_says_why() {
        let b64 = |len: usize| STANDARD.encode(vec![1u8; len]);
        let cases = [
            (String::new(), SecretError::MissingPrefix),
            (b64(32), SecretError::MissingPrefix),
            (format!("whsec-{}", b64(32)), SecretError::MissingPrefix),
            (format!("WHSEC_{}", b64(32)), SecretError::MissingPrefix),
            (
                format!("whsec_{}", b64(23)),
                SecretError::TooShort { len: 23 },
            ),
            ("whsec_".to_string(), SecretError::TooShort { len: 0 }),
            (
                format!("whsec_{}", b64(65)),
                SecretError::TooLong { len: 65 },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                SigningSecret::parse(&text).unwrap_err(),
                expected,
                "{text:?}"
            );
        }
        // 25 bytes need one padding character; dropping it, using the URL-safe
        // alphabet or adding junk is not the standard encoding.
        let padded = format!("whsec_{}", STANDARD.encode([0xfbu8; 25]));
        assert!(padded.ends_with('='));
        assert!(SigningSecret::parse(&padded).is_ok());
        for bad in [
            padded.trim_end_matches('=').to_string(),
            padded.replace('+', "-").replace('/', "_"),
            format!("{padded}!"),
            "whsec_not base64 at all".to_string(),
        ] {
            let err = SigningSecret::parse(&bad).unwrap_err();
            assert!(matches!(err, SecretError::Base64(_)), "{bad:?}: {err:?}");
            assert!(err.to_string().contains("base64"), "{err}");
        }
        assert_eq!(
            SecretError::TooShort { len: 16 }.to_string(),
            "the signing secret is 16 bytes long; it needs at least 24"
        );
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let shown = format!("{secret:?} {:?}", Some(&secret));
        assert!(!shown.contains("MfKQ9r8G"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
