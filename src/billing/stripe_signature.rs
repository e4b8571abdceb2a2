//! Stripe's webhook signatures, checked as Stripe documents them: the
//! `Stripe-Signature` header carries a timestamp `t` and one or more `v1`
//! signatures, each the hex HMAC-SHA256 of `"{t}.{payload}"` under the
//! endpoint's secret. A payload is authentic when any `v1` matches (compared
//! in constant time) and `t` is no older than the tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's default tolerance: five minutes.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a payload was not accepted as Stripe's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header has no timestamp")]
    NoTimestamp,
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error("the signature's timestamp is older than the tolerance")]
    TooOld,
    #[error("no signature matches the payload")]
    NoMatch,
}

/// Checks `payload` (the raw request body) against `header` under
/// `secret`, at `now_secs`, with `tolerance_secs`.
pub fn verify(
    payload: &[u8],
    header: &str,
    secret: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.extend(hex::decode(value).ok()),
            _ => {} // v0 and schemes to come are ignored, as Stripe's libraries do
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::NoTimestamp)?;
    if signatures.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let expected = sign(payload, timestamp, secret);
    if !signatures
        .iter()
        .any(|given| crate::auth::api_key::constant_time_eq(given, &expected))
    {
        return Err(SignatureError::NoMatch);
    }
    if timestamp < now_secs - tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    Ok(())
}

/// The HMAC-SHA256 of `"{timestamp}.{payload}"` under `secret`.
pub fn sign(payload: &[u8], timestamp: i64, secret: &str) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const PAYLOAD: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
    /// Computed with Python's `hmac` module, apart from this code.
    const SIGNATURE: &str = "a13d4b1f9003bc2fb6c06224e878b6056185eaa50d40e1e7dc05517f8af41d7b";
    const T: i64 = 1_700_000_000;

    #[test]
    fn a_matching_v1_within_the_tolerance_is_accepted() {
        let header = format!("t={T},v1={SIGNATURE}");
        assert_eq!(
            verify(PAYLOAD, &header, SECRET, T + 10, TOLERANCE_SECS),
            Ok(())
        );
        assert_eq!(hex::encode(sign(PAYLOAD, T, SECRET)), SIGNATURE);
        // Several v1 signatures (a secret being rolled): any one may match.
        let rolled = format!("t={T},v1={},v1={SIGNATURE},v0=ignored", "00".repeat(32));
        assert_eq!(verify(PAYLOAD, &rolled, SECRET, T, TOLERANCE_SECS), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        let header = format!("t={T},v1={SIGNATURE}");
        let tampered = br#"{"id":"evt_1","type":"checkout.session.completed","amount":1}"#;
        assert_eq!(
            verify(tampered, &header, SECRET, T, TOLERANCE_SECS),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(PAYLOAD, &header, "whsec_other", T, TOLERANCE_SECS),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(
                PAYLOAD,
                &header,
                SECRET,
                T + TOLERANCE_SECS + 1,
                TOLERANCE_SECS
            ),
            Err(SignatureError::TooOld)
        );
        let moved = format!("t={},v1={SIGNATURE}", T + 1);
        assert_eq!(
            verify(PAYLOAD, &moved, SECRET, T, TOLERANCE_SECS),
            Err(SignatureError::NoMatch),
            "the timestamp is signed too"
        );
        assert_eq!(
            verify(
                PAYLOAD,
                &format!("v1={SIGNATURE}"),
                SECRET,
                T,
                TOLERANCE_SECS
            ),
            Err(SignatureError::NoTimestamp)
        );
        assert_eq!(
            verify(
                PAYLOAD,
                &format!("t={T},v0={SIGNATURE}"),
                SECRET,
                T,
                TOLERANCE_SECS
            ),
            Err(SignatureError::NoSignature)
        );
        assert_eq!(
            verify(PAYLOAD, "", SECRET, T, TOLERANCE_SECS),
            Err(SignatureError::NoTimestamp)
        );
    }
}
