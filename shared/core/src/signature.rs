//! HMAC-SHA256 webhook signatures, checked on the raw body bytes in constant time.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Computes HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Computes a base64 (standard alphabet, padded) HMAC-SHA256, as Shopify and WooCommerce send.
pub fn hmac_sha256_base64(secret: &[u8], parts: &[&[u8]]) -> String {
    BASE64.encode(hmac_sha256(secret, parts))
}

/// Checks a base64 signature against the HMAC of `parts`, comparing the decoded bytes in
/// constant time. A signature that is not valid base64 does not match.
pub fn matches_base64(secret: &[u8], parts: &[&[u8]], signature: &str) -> bool {
    let Ok(given) = BASE64.decode(signature.trim()) else {
        return false;
    };
    let expected = hmac_sha256(secret, parts);
    given.len() == expected.len() && bool::from(given.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_signature_does_not_match() {
        let signature = hmac_sha256_base64(b"key", &[b"body"]);
        assert!(matches_base64(b"key", &[b"body"], &signature));
        assert!(!matches_base64(b"key", &[b"body "], &signature));
        assert!(!matches_base64(b"other", &[b"body"], &signature));
        assert!(!matches_base64(b"key", &[b"body"], "not base64!"));
        assert!(!matches_base64(b"key", &[b"body"], ""));
    }
}
