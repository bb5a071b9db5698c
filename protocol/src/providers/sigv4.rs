//! AWS Signature Version 4 (header signing), sans-IO: the caller passes the request parts and the
//! time as Unix seconds and gets back the headers to add. Owns canonicalisation (URI, query,
//! headers), the string to sign, the signing-key chain and the date formatting.
//!
//! Never reads a clock and never logs: the secret key only feeds the HMAC chain.
//!
//! Path encoding: AWS services other than S3 encode the request path twice. This module encodes
//! the `path` it is given once, segment by segment, so callers pass the path exactly as it goes
//! on the wire (already percent-encoded once): `/model/a%3Ab/converse` is signed as
//! `/model/a%253Ab/converse`. The published test suite gives raw paths (`/ሴ`), which this
//! single pass turns into the suite's canonical form. Dot segments are not normalised; callers
//! here only build clean paths.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name that starts the string to sign and the `authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// SHA-256 of the empty string, the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

type HmacSha256 = Hmac<Sha256>;

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone)]
pub struct SignableRequest<'a> {
    /// HTTP method, e.g. `POST` (used as given; AWS expects upper case).
    pub method: &'a str,
    /// Path as sent on the wire, starting with `/`; encoded once more while signing.
    pub path: &'a str,
    /// Query parameters, not percent-encoded (the signer encodes and sorts them).
    pub query: &'a [(&'a str, &'a str)],
    /// Headers to sign, including `host`. Names in any case; repeated names are joined with `,`
    /// in the order given. The signer adds `x-amz-date` (and the others it returns) itself.
    pub headers: &'a [(&'a str, &'a str)],
    /// The request body.
    pub payload: &'a [u8],
    /// Also sign and return `x-amz-content-sha256` (S3 requires it; most services do not).
    pub content_sha256_header: bool,
}

/// Long-term or temporary AWS credentials.
#[derive(Clone)]
pub struct Credentials<'a> {
    /// Access key id (appears in the `authorization` header).
    pub access_key_id: &'a str,
    /// Secret access key (never leaves the HMAC chain).
    pub secret_access_key: &'a str,
    /// Session token of temporary credentials; sent and signed as `x-amz-security-token`.
    pub session_token: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The headers a signed request must carry, in addition to those it was signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `x-amz-date`: the request time, `YYYYMMDDTHHMMSSZ`.
    pub x_amz_date: String,
    /// `x-amz-content-sha256`, when the request asked for it.
    pub x_amz_content_sha256: Option<String>,
    /// `x-amz-security-token`, when the credentials carry a session token.
    pub x_amz_security_token: Option<String>,
    /// `authorization`: algorithm, credential scope, signed header names and signature.
    pub authorization: String,
}

impl SignedHeaders {
    /// The headers as `(lower-case name, value)` pairs, ready to append to a request.
    pub fn into_pairs(self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(4);
        out.push(("x-amz-date", self.x_amz_date));
        if let Some(hash) = self.x_amz_content_sha256 {
            out.push(("x-amz-content-sha256", hash));
        }
        if let Some(token) = self.x_amz_security_token {
            out.push(("x-amz-security-token", token));
        }
        out.push(("authorization", self.authorization));
        out
    }
}

/// Every intermediate of one signature, for tests and debugging (it holds no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningSteps {
    /// The canonical request (task 1).
    pub canonical_request: String,
    /// The string to sign (task 2).
    pub string_to_sign: String,
    /// Hex signature (task 3).
    pub signature: String,
    /// The resulting headers.
    pub headers: SignedHeaders,
}

/// Signs `req` for `region`/`service` at `now_unix` and returns the headers to add.
pub fn sign(
    req: &SignableRequest<'_>,
    creds: &Credentials<'_>,
    region: &str,
    service: &str,
    now_unix: u64,
) -> SignedHeaders {
    sign_with_steps(req, creds, region, service, now_unix).headers
}

/// [`sign`], also returning the canonical request, string to sign and signature.
pub fn sign_with_steps(
    req: &SignableRequest<'_>,
    creds: &Credentials<'_>,
    region: &str,
    service: &str,
    now_unix: u64,
) -> SigningSteps {
    let amz_date = amz_date(now_unix);
    let date = &amz_date[..8];
    let payload_hash = hex(&Sha256::digest(req.payload));

    // Headers the signer adds take part in the signature like the caller's.
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), canonical_header_value(value)))
        .collect();
    headers.push(("x-amz-date".to_owned(), amz_date.clone()));
    if req.content_sha256_header {
        headers.push(("x-amz-content-sha256".to_owned(), payload_hash.clone()));
    }
    if let Some(token) = creds.session_token {
        headers.push(("x-amz-security-token".to_owned(), token.trim().to_owned()));
    }
    // Stable sort keeps repeated names in the order given, as their values must be joined.
    headers.sort_by(|a, b| a.0.cmp(&b.0));

    let mut canonical_headers = String::with_capacity(256);
    let mut signed_headers = String::with_capacity(64);
    let mut previous: Option<&str> = None;
    for (name, value) in &headers {
        if previous == Some(name.as_str()) {
            canonical_headers.pop(); // the newline of the previous value
            canonical_headers.push(',');
        } else {
            if previous.is_some() {
                signed_headers.push(';');
            }
            signed_headers.push_str(name);
            canonical_headers.push_str(name);
            canonical_headers.push(':');
        }
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
        previous = Some(name.as_str());
    }

    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(creds.secret_access_key, date, region, service);
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key_id
    );
    SigningSteps {
        canonical_request,
        string_to_sign,
        signature,
        headers: SignedHeaders {
            x_amz_date: amz_date,
            x_amz_content_sha256: req.content_sha256_header.then_some(payload_hash),
            x_amz_security_token: creds.session_token.map(|t| t.trim().to_owned()),
            authorization,
        },
    }
}

/// The signing key: `HMAC("AWS4" + secret, date)`, then region, service and `aws4_request`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut first = Vec::with_capacity(4 + secret.len());
    first.extend_from_slice(b"AWS4");
    first.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&first, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Each `/`-separated segment of `path` URI-encoded once (see the module doc on double encoding).
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode_into(segment, &mut out);
    }
    out
}

/// Query parameters encoded and sorted by name, then value, joined as `a=1&b=2`.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// `s` with every byte outside `A-Z a-z 0-9 - _ . ~` written as `%XX` (upper-case hex), the
/// encoding SigV4 specifies (it differs from form encoding: space is `%20`, `/` is `%2F`).
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    uri_encode_into(s, &mut out);
    out
}

fn uri_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// A header value trimmed, with runs of spaces collapsed to one.
fn canonical_header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut last_space = false;
    for c in value.trim().chars() {
        if c == ' ' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here; the fallback
    // keeps the code free of panics all the same.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

// === dates ===

/// `(year, month 1..=12, day 1..=31)` of the proleptic Gregorian calendar for a count of days
/// since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based month
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The `x-amz-date` form of a Unix time: `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(now_unix: u64) -> String {
    let days = (now_unix / 86_400) as i64;
    let secs = now_unix % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // The published "Signature Version 4 Test Suite" (AWS General Reference): every vector is
    // signed with these credentials, in us-east-1, for service "service", at 20150830T123600Z.
    const SUITE_CREDS: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        session_token: None,
    };
    /// 2015-08-30T12:36:00Z.
    const SUITE_TIME: u64 = 1_440_938_160;
    const HOST: (&str, &str) = ("Host", "example.amazonaws.com");
    const SCOPE_LINE: &str =
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n";

    fn suite_sign(req: &SignableRequest<'_>, creds: &Credentials<'_>) -> SigningSteps {
        sign_with_steps(req, creds, "us-east-1", "service", SUITE_TIME)
    }

    fn get(
        path: &'static str,
        headers: &'static [(&'static str, &'static str)],
    ) -> SignableRequest<'static> {
        SignableRequest {
            method: "GET",
            path,
            query: &[],
            headers,
            payload: b"",
            content_sha256_header: false,
        }
    }

    fn authz(signed: &str, signature: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={signature}")
    }

    #[test]
    fn suite_get_vanilla() {
        let steps = suite_sign(&get("/", &[HOST]), &SUITE_CREDS);
        assert_eq!(
            steps.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            steps.string_to_sign,
            format!("{SCOPE_LINE}bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        );
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(steps.headers.x_amz_date, "20150830T123600Z");
        assert_eq!(steps.headers.x_amz_security_token, None);
    }

    #[test]
    fn suite_post_vanilla() {
        let req = SignableRequest {
            method: "POST",
            ..get("/", &[HOST])
        };
        let steps = suite_sign(&req, &SUITE_CREDS);
        assert_eq!(
            steps.canonical_request,
            "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            steps.string_to_sign,
            format!("{SCOPE_LINE}553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87")
        );
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn suite_get_vanilla_query_order_key() {
        // Request line: GET /?Param1=value2&Param1=Value1
        let req = SignableRequest {
            query: &[("Param1", "value2"), ("Param1", "Value1")],
            ..get("/", &[HOST])
        };
        let steps = suite_sign(&req, &SUITE_CREDS);
        assert_eq!(
            steps.canonical_request,
            "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            steps.string_to_sign,
            format!("{SCOPE_LINE}704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89")
        );
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;x-amz-date",
                "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"
            )
        );
    }

    #[test]
    fn suite_post_x_www_form_urlencoded() {
        let req = SignableRequest {
            method: "POST",
            payload: b"Param1=value1",
            ..get(
                "/",
                &[("Content-Type", "application/x-www-form-urlencoded"), HOST],
            )
        };
        let steps = suite_sign(&req, &SUITE_CREDS);
        assert_eq!(
            steps.canonical_request,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            steps.string_to_sign,
            format!("{SCOPE_LINE}42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281")
        );
        assert_eq!(
            steps.headers.authorization,
            authz(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn suite_post_sts_header_before() {
        // The session token is part of the canonical request ("header before" variant).
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let creds = Credentials {
            session_token: Some(token),
            ..SUITE_CREDS
        };
        let req = SignableRequest {
            method: "POST",
            ..get("/", &[HOST])
        };
        let steps = suite_sign(&req, &creds);
        assert_eq!(
            steps.canonical_request,
            format!("POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:{token}\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(
            steps.string_to_sign,
            format!("{SCOPE_LINE}c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6")
        );
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
        assert_eq!(steps.headers.x_amz_security_token.as_deref(), Some(token));
    }

    #[test]
    fn suite_get_header_value_trim() {
        let steps = suite_sign(
            &get(
                "/",
                &[
                    HOST,
                    ("My-Header1", " value1"),
                    ("My-Header2", " \"a   b   c\""),
                ],
            ),
            &SUITE_CREDS,
        );
        assert_eq!(
            steps.canonical_request,
            "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;my-header1;my-header2;x-amz-date",
                "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
            )
        );
    }

    #[test]
    fn suite_get_header_key_duplicate() {
        let steps = suite_sign(
            &get(
                "/",
                &[
                    HOST,
                    ("My-Header1", "value2"),
                    ("My-Header1", "value2"),
                    ("My-Header1", "value1"),
                ],
            ),
            &SUITE_CREDS,
        );
        assert!(steps
            .canonical_request
            .contains("\nmy-header1:value2,value2,value1\n"));
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;my-header1;x-amz-date",
                "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"
            )
        );
    }

    #[test]
    fn suite_get_utf8_and_unreserved() {
        let steps = suite_sign(&get("/ሴ", &[HOST]), &SUITE_CREDS);
        assert!(steps.canonical_request.starts_with("GET\n/%E1%88%B4\n\n"));
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;x-amz-date",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"
            )
        );
        let path = "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let steps = suite_sign(&get(path, &[HOST]), &SUITE_CREDS);
        assert!(steps
            .canonical_request
            .starts_with(&format!("GET\n{path}\n")));
        assert_eq!(
            steps.headers.authorization,
            authz(
                "host;x-amz-date",
                "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"
            )
        );
    }

    #[test]
    fn wire_path_is_encoded_again() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
        );
        assert_eq!(canonical_uri("/example space/"), "/example%20space/");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn content_sha256_header_is_signed_when_asked() {
        let req = SignableRequest {
            method: "POST",
            payload: b"Param1=value1",
            content_sha256_header: true,
            ..get("/", &[HOST])
        };
        let steps = suite_sign(&req, &SUITE_CREDS);
        let hash = "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e";
        assert!(steps
            .canonical_request
            .contains(&format!("\nx-amz-content-sha256:{hash}\nx-amz-date:")));
        assert!(steps
            .headers
            .authorization
            .contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date,"));
        let pairs = steps.headers.into_pairs();
        let names: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            ["x-amz-date", "x-amz-content-sha256", "authorization"]
        );
    }

    #[test]
    fn signature_depends_on_time() {
        let req = get("/", &[HOST]);
        let a = sign(&req, &SUITE_CREDS, "us-east-1", "service", SUITE_TIME);
        let b = sign(&req, &SUITE_CREDS, "us-east-1", "service", SUITE_TIME + 1);
        assert_ne!(a.authorization, b.authorization);
        assert_eq!(b.x_amz_date, "20150830T123601Z");
    }

    #[test]
    fn credentials_debug_hides_the_secret() {
        let text = format!("{SUITE_CREDS:?}");
        assert!(text.contains("AKIDEXAMPLE"));
        assert!(!text.contains("EXAMPLEKEY"));
    }

    #[test]
    fn dates() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(SUITE_TIME), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(amz_date(1_709_251_199), "20240229T235959Z");
        assert_eq!(amz_date(4_107_542_400), "21000301T000000Z");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    fn is_leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    #[test]
    fn civil_from_days_matches_day_counting() {
        // Walk day by day from 1970 to 2400 and compare with a naive calendar.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..(430 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ if is_leap(y) => 29,
                _ => 28,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
