//! `report_url_params`: the report's data the payment system hands the frontend after a
//! successful payment (`date=2023-10-8&time=12:44&...&hash=XXX&report_id=XXX`), signed by the
//! payment system. `hash` is the lowercase hex HMAC-SHA256, keyed with
//! `CHATBOT_REPORT_HASH_SECRET`, of the string with the `hash` pair removed and the other pairs
//! kept in their order, joined by `&`. The signed pairs must include exactly one `report_id`,
//! the socket's own: parameters signed for no report in particular are refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest parameter string accepted.
pub const MAX_PARAMS: usize = 2048;

/// Why a parameter string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Empty, too long or with characters a URL query cannot carry.
    #[error("report_url_params must be a URL query string of at most {MAX_PARAMS} characters")]
    Malformed,
    /// No `hash` pair, or more than one.
    #[error("report_url_params must carry exactly one hash")]
    NoHash,
    /// The hash does not match: forged or altered.
    #[error("report_url_params hash does not match")]
    Forged,
    /// Signed for another report, or for no report in particular.
    #[error("report_url_params must carry one signed report_id, this report's")]
    OtherReport,
}

fn query_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
        )
}

/// The signed message of `params`: its pairs without the `hash` pair, and the hash given.
fn split_hash(params: &str) -> Result<(String, &str), ParamsError> {
    let mut hash = None;
    let mut rest = Vec::new();
    for pair in params.split('&') {
        match pair.strip_prefix("hash=") {
            Some(h) if hash.is_none() => hash = Some(h),
            Some(_) => return Err(ParamsError::NoHash),
            None => rest.push(pair),
        }
    }
    Ok((rest.join("&"), hash.ok_or(ParamsError::NoHash)?))
}

/// Sign `message` (the parameters without `hash`) as the payment system does.
pub fn sign(secret: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Check `params` for report `report_id`; the string as given (without a leading `?`) when
/// it is genuine.
pub fn verify<'a>(secret: &[u8], params: &'a str, report_id: &str) -> Result<&'a str, ParamsError> {
    let params = params.strip_prefix('?').unwrap_or(params);
    if params.is_empty() || params.len() > MAX_PARAMS || !params.bytes().all(query_char) {
        return Err(ParamsError::Malformed);
    }
    let (message, given) = split_hash(params)?;
    // Lowercase hex only, as the contract says; compared in constant time.
    let given = match given
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        true => hex::decode(given).map_err(|_| ParamsError::Forged)?,
        false => return Err(ParamsError::Forged),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.verify_slice(&given).map_err(|_| ParamsError::Forged)?;
    let named = message
        .split('&')
        .filter_map(|p| p.strip_prefix("report_id="))
        .collect::<Vec<_>>();
    // Bound to this report: a payment for one report never opens another.
    if named != [report_id] {
        return Err(ParamsError::OtherReport);
    }
    Ok(params)
}

/// A signed parameter string for `pairs` (the payment system's role; the demo uses it).
pub fn signed_params(secret: &[u8], pairs: &str) -> String {
    let hash = sign(secret, pairs);
    format!("{pairs}&hash={hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a-test-secret-of-some-length";

    #[test]
    fn the_hash_covers_the_other_pairs_in_their_order() {
        let message = "date=2023-10-8&time=12:44&tz=2&report_id=newjob";
        let hash = sign(KEY, message);
        let good = format!("date=2023-10-8&time=12:44&hash={hash}&tz=2&report_id=newjob");
        assert_eq!(verify(KEY, &good, "newjob"), Ok(good.as_str()));
        let reordered = format!("time=12:44&date=2023-10-8&hash={hash}&tz=2&report_id=newjob");
        assert_eq!(verify(KEY, &reordered, "newjob"), Err(ParamsError::Forged));
        let altered = good.replace("12:44", "12:45");
        assert_eq!(verify(KEY, &altered, "newjob"), Err(ParamsError::Forged));
        let upper = good.replace(&hash, &hash.to_uppercase());
        assert_eq!(verify(KEY, &upper, "newjob"), Err(ParamsError::Forged));
        assert_eq!(verify(KEY, &good, "love"), Err(ParamsError::OtherReport));
        assert_eq!(
            verify(b"another-secret-entirely", &good, "newjob"),
            Err(ParamsError::Forged)
        );
        let twice = format!("{good}&hash={hash}");
        assert_eq!(verify(KEY, &twice, "newjob"), Err(ParamsError::NoHash));
        assert_eq!(
            verify(KEY, message, "newjob"),
            Err(ParamsError::NoHash),
            "no hash at all"
        );
        assert_eq!(
            verify(KEY, "a=<script>&hash=00", "newjob"),
            Err(ParamsError::Malformed)
        );
    }

    #[test]
    fn the_report_id_is_signed_and_must_be_the_sockets() {
        let unbound = signed_params(KEY, "date=2023-10-8&time=12:44");
        assert_eq!(
            verify(KEY, &unbound, "newjob"),
            Err(ParamsError::OtherReport)
        );
        let twice = signed_params(KEY, "report_id=newjob&report_id=love");
        assert_eq!(verify(KEY, &twice, "newjob"), Err(ParamsError::OtherReport));
        // A report_id outside the signature (after the hash is computed) does not count.
        let tacked = format!("{unbound}&report_id=newjob");
        assert_eq!(verify(KEY, &tacked, "newjob"), Err(ParamsError::Forged));
    }
}
