//! Request parameters as 1.2 read them: the union of the query string and the body (urlencoded
//! or multipart), the query string winning; uploaded files kept apart from plain fields.

use std::collections::HashMap;

use bytes::Bytes;

/// Largest request body accepted; a CSR or a manifest is a few KiB, so this is generous.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request's parameters.
#[derive(Debug, Default, Clone)]
pub struct Params {
    fields: HashMap<String, String>,
    files: HashMap<String, Bytes>,
}

/// The parameters could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParamsError {
    /// A name or value was not UTF-8.
    #[error("parameter {name:?} is not valid UTF-8")]
    NotUtf8 {
        /// The parameter (lossily decoded).
        name: String,
    },
    /// The multipart body was malformed.
    #[error("malformed multipart body")]
    Multipart(#[from] multer::Error),
    /// A multipart content type without a boundary.
    #[error("multipart body without a boundary")]
    NoBoundary,
}

impl Params {
    /// Parses a query string and a body of the given content type. Unknown content types
    /// (JSON included, as in 1.2) contribute no parameters.
    pub async fn parse(
        query: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Params, ParamsError> {
        let mut params = Params::default();
        // The query string is read first and every source keeps the first value it sees, so
        // the query wins, as in 1.2 (Werkzeug's CombinedMultiDict looks at args first).
        if let Some(query) = query {
            params.add_urlencoded(query.as_bytes())?;
        }
        let media_type = content_type.map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        match media_type.as_deref() {
            Some("application/x-www-form-urlencoded") => {
                params.add_urlencoded(&body)?;
            }
            Some("multipart/form-data") => {
                let boundary = content_type
                    .and_then(boundary)
                    .ok_or(ParamsError::NoBoundary)?;
                params.add_multipart(body, boundary).await?;
            }
            _ => {}
        }
        Ok(params)
    }

    fn add_urlencoded(&mut self, input: &[u8]) -> Result<(), ParamsError> {
        // Decoding by hand keeps the raw bytes, so that non-UTF-8 input is refused rather
        // than silently replaced.
        for pair in input.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let mut parts = pair.splitn(2, |&b| b == b'=');
            let raw_name = parts.next().unwrap_or_default();
            let raw_value = parts.next().unwrap_or_default();
            let name = percent_decode(raw_name)?;
            let value = percent_decode(raw_value)
                .map_err(|_| ParamsError::NotUtf8 { name: name.clone() })?;
            // 1.2 took the first value of a repeated name.
            self.fields.entry(name).or_insert(value);
        }
        Ok(())
    }

    async fn add_multipart(&mut self, body: Bytes, boundary: String) -> Result<(), ParamsError> {
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Some(field) = multipart.next_field().await? {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            let is_file = field.file_name().is_some();
            let data = field.bytes().await?;
            if is_file {
                self.files.entry(name).or_insert(data);
            } else {
                let value = String::from_utf8(data.to_vec())
                    .map_err(|_| ParamsError::NotUtf8 { name: name.clone() })?;
                self.fields.entry(name).or_insert(value);
            }
        }
        Ok(())
    }

    /// A field that is present and non-empty ("required" in 1.2's sense).
    pub fn required(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// A field as given, possibly empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// An uploaded file part (a plain field of the same name does not count).
    pub fn file(&self, name: &str) -> Option<&Bytes> {
        self.files.get(name)
    }

    /// Sets a query-or-form field (tests and internal callers).
    pub fn insert(&mut self, name: &str, value: &str) {
        self.fields.insert(name.to_owned(), value.to_owned());
    }
}

/// The `boundary` parameter of a multipart content type, quoted or not. Parsed by hand because
/// the 1.2 managers' boundary ends in `$`, which strict MIME parsers may refuse.
fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

fn percent_decode(input: &[u8]) -> Result<String, ParamsError> {
    let mut out = Vec::with_capacity(input.len());
    let mut index = 0;
    while index < input.len() {
        match input[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < input.len() => {
                match (hex_value(input[index + 1]), hex_value(input[index + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        index += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8(out).map_err(|error| ParamsError::NotUtf8 {
        name: String::from_utf8_lossy(error.as_bytes()).into_owned(),
    })
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Params {
        Params::parse(query, content_type, Bytes::copy_from_slice(body))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn query_wins_over_body() {
        let params = parse(
            Some("username=q"),
            Some("application/x-www-form-urlencoded"),
            b"username=b&password=p%20w+x",
        )
        .await;
        assert_eq!(params.get("username"), Some("q"));
        assert_eq!(params.get("password"), Some("p w x"));
    }

    #[tokio::test]
    async fn empty_counts_as_missing() {
        let params = parse(Some("name=&x=0"), None, b"").await;
        assert_eq!(params.required("name"), None);
        assert_eq!(params.get("name"), Some(""));
        assert_eq!(params.required("x"), Some("0"));
    }

    #[tokio::test]
    async fn json_bodies_give_nothing() {
        let params = parse(None, Some("application/json"), br#"{"username": "u"}"#).await;
        assert_eq!(params.get("username"), None);
    }

    #[tokio::test]
    async fn multipart_with_dollar_boundary_and_file() {
        let boundary = "----------_BoUnDaRy_StRiNg_$";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"sid\"\r\n\r\n5\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"csr\"; filename=\"csr.pem\"\r\n\
             Content-Type: application/octet-stream\r\n\r\nPEM\r\n--{boundary}--\r\n"
        );
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let params = parse(None, Some(&content_type), body.as_bytes()).await;
        assert_eq!(params.get("sid"), Some("5"));
        assert_eq!(params.file("csr").map(|b| &b[..]), Some(&b"PEM"[..]));
        assert_eq!(params.get("csr"), None);
    }

    #[tokio::test]
    async fn plain_field_is_not_a_file() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"csr\"\r\n\r\nPEM\r\n--b--\r\n";
        let params = parse(
            None,
            Some("multipart/form-data; boundary=\"b\""),
            body.as_bytes(),
        )
        .await;
        assert!(params.file("csr").is_none());
        assert_eq!(params.get("csr"), Some("PEM"));
    }

    #[tokio::test]
    async fn non_utf8_is_refused() {
        let result = Params::parse(Some("name=%ff"), None, Bytes::new())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(result, ParamsError::NotUtf8 { .. }));
    }

    #[tokio::test]
    async fn stray_percent_is_literal() {
        let params = parse(Some("a=100%&b=%2"), None, b"").await;
        assert_eq!(params.get("a"), Some("100%"));
        assert_eq!(params.get("b"), Some("%2"));
    }
}
