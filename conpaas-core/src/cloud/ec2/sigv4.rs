//! AWS Signature Version 4: the canonical request, the string to sign, the derived signing key
//! and the `Authorization` header, with aws-lc-rs's HMAC-SHA256 and SHA-256.

use aws_lc_rs::{digest, hmac};

/// The signing algorithm named in the header and in the string to sign.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// One HTTP request as SigV4 sees it.
#[derive(Debug)]
pub(super) struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// The URI path, already canonical (`/` for EC2).
    pub path: &'a str,
    /// The canonical query string (empty for a form POST).
    pub query: &'a str,
    /// The signed headers: lower-case names, trimmed values, sorted by name.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub payload: &'a [u8],
}

/// Who signs, for which region and service, and when.
#[derive(Debug)]
pub(super) struct Scope<'a> {
    /// The access key id.
    pub access_key_id: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, as in the `X-Amz-Date` header.
    pub amz_date: &'a str,
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// e.g. `ec2`.
    pub service: &'a str,
}

impl Scope<'_> {
    fn date(&self) -> &str {
        self.amz_date.get(..8).unwrap_or(self.amz_date)
    }

    fn credential_scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date(),
            self.region,
            self.service
        )
    }
}

/// The hex SHA-256 of `bytes` (the payload hash and the canonical request hash).
pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

fn signed_header_names(request: &Request<'_>) -> String {
    request
        .headers
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";")
}

/// The canonical request of SigV4's step 1.
pub(super) fn canonical_request(request: &Request<'_>) -> String {
    let mut text = format!("{}\n{}\n{}\n", request.method, request.path, request.query);
    for (name, value) in request.headers {
        text.push_str(name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&signed_header_names(request));
    text.push('\n');
    text.push_str(&sha256_hex(request.payload));
    text
}

/// The string to sign of SigV4's step 2.
pub(super) fn string_to_sign(scope: &Scope<'_>, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        scope.amz_date,
        scope.credential_scope(),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The hex signature of `request` with `secret` (steps 3 and 4).
pub(super) fn signature(secret: &str, scope: &Scope<'_>, request: &Request<'_>) -> String {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), scope.date().as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), scope.service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let to_sign = string_to_sign(scope, &canonical_request(request));
    hex::encode(hmac_sha256(k_signing.as_ref(), to_sign.as_bytes()))
}

/// The `Authorization` header value of `request`.
pub(super) fn authorization(secret: &str, scope: &Scope<'_>, request: &Request<'_>) -> String {
    format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        scope.access_key_id,
        scope.credential_scope(),
        signed_header_names(request),
        signature(secret, scope, request)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of AWS's SigV4 documentation ("Examples of the complete Signature
    /// Version 4 signing process": IAM `ListUsers`, 2015-08-30).
    #[test]
    fn aws_documentation_example() {
        let headers = [
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("host", "iam.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ];
        let request = Request {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &headers,
            payload: b"",
        };
        let scope = Scope {
            access_key_id: "AKIDEXAMPLE",
            amz_date: "20150830T123600Z",
            region: "us-east-1",
            service: "iam",
        };
        let canonical = canonical_request(&request);
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        assert_eq!(
            signature(secret, &scope, &request),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        assert_eq!(
            authorization(secret, &scope, &request),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }
}
