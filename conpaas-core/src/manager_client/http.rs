//! The HTTP/1.x of one manager call: the request (`Connection: close`), then the answer read
//! as 1.2 managers send it — `HTTP/1.0`, no `Content-Length`, the body ended by closing TCP
//! without a TLS close_notify — as well as with `Content-Length` or chunked.
//!
//! An end without close_notify is only an end when the answer is otherwise complete: its
//! length was announced and reached, its last chunk came, or (a close-delimited body) it
//! parses as complete JSON. Anything else is [`Error::Incomplete`], so a connection cut
//! mid-answer is never taken for the answer.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::Error;

/// The largest answer head (status line and headers) read.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The largest chunk-size line of a chunked answer.
const MAX_CHUNK_LINE: usize = 1024;

/// Where a call goes: `https://<host>[:<port>]<target>` (or `http://`, 1.2's task farm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// `https` (every manager but the task farm's, which 1.2 called over plain HTTP).
    pub tls: bool,
    /// The host, without brackets for an IPv6 address.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Target {
    /// Parses `https://host[:port][/path][?query]` (443 when no port is given) or the same
    /// with `http://` (80).
    pub fn parse(url: &str) -> Result<Target, Error> {
        let bad = |reason: &str| Error::Url(format!("{url}: {reason}"));
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
            (false, rest)
        } else {
            return Err(bad("not an https URL"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in the host"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("junk after the IPv6 address"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(port) => port.parse().map_err(|_| bad("invalid port"))?,
        };
        let tail = tail.split('#').next().unwrap_or_default();
        let target = if tail.starts_with('/') {
            tail.to_owned()
        } else {
            format!("/{tail}")
        };
        if target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("control characters or spaces in the path"));
        }
        Ok(Target {
            tls,
            host: host.to_owned(),
            port,
            target,
        })
    }

    /// The `Host` header: `host:port`, an IPv6 address in brackets.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.get(..prefix.len())
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .map(|_| &text[prefix.len()..])
}

/// The request head. The body is sent after it as given; `Content-Length` announces it
/// whenever there is one.
pub(super) fn request_head(
    method: &str,
    target: &Target,
    content_type: &str,
    body_len: Option<usize>,
) -> Vec<u8> {
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n",
        target.target,
        target.host_header()
    );
    if let Some(length) = body_len {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    // One call per connection, as 1.2's client did: the answer may end with the connection.
    head.push_str("Accept-Encoding: identity\r\nConnection: close\r\n\r\n");
    head.into_bytes()
}

/// `application/x-www-form-urlencoded` encoding of one query value (space as `+`).
pub(super) fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// A `multipart/form-data` body of the text `fields` (1.2: `method`, and the task farm's
/// `uriLocation`) and one file part; answers the body and its Content-Type. The boundary is
/// 128 random bits, which a file's bytes cannot be made to contain by anyone not seeing this
/// request.
pub(super) fn multipart(
    fields: &[(&str, &str)],
    field: &str,
    file_name: &str,
    bytes: &[u8],
) -> (Vec<u8>, String) {
    let boundary = format!("conpaas-{:032x}", rand::random::<u128>());
    // A quote or line break in a name would end the header: escaped as browsers do.
    let escape = |text: &str| {
        text.replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    };
    let mut body = Vec::with_capacity(bytes.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                escape(name)
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            escape(field),
            escape(file_name)
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Ended by the end of the connection (HTTP/1.0, or no length given).
    Close,
}

/// What one read gave.
enum Read {
    Data,
    /// The peer ended the connection; `clean` when it sent a TLS close_notify first.
    End {
        clean: bool,
    },
}

/// Reads more bytes into `buf`. rustls reports a TCP end without close_notify as
/// `UnexpectedEof` (after handing out all the data before it): that is an unclean end, for
/// the framing to judge, not an error by itself.
async fn read_more<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) -> Result<Read, Error> {
    let mut chunk = [0u8; 16 * 1024];
    match io.read(&mut chunk).await {
        Ok(0) => Ok(Read::End { clean: true }),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Read::Data)
        }
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            Ok(Read::End { clean: false })
        }
        Err(error) => Err(Error::Io(error)),
    }
}

/// Reads one answer from `io`: the head, then (for status 200) the body of at most `limit`
/// bytes, which it answers. A status other than 200 is [`Error::Status`] without reading its
/// body. `raw`: the body is not JSON (a code archive), so a close-delimited body ended without
/// close_notify is taken as it came, as 1.2's client took it: nothing else can tell its end.
pub(super) async fn read_answer<R: AsyncRead + Unpin>(
    io: &mut R,
    limit: usize,
    raw: bool,
) -> Result<Vec<u8>, Error> {
    let mut buf = Vec::with_capacity(8 * 1024);
    let (status, framing) = loop {
        if let Some((status, framing, head_len)) = parse_head(&buf)? {
            buf.drain(..head_len);
            // An interim answer (100 Continue and the like) precedes the real one.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            break (status, framing);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Error::Protocol(format!(
                "the answer's head is larger than {MAX_HEAD_BYTES} bytes"
            )));
        }
        if let Read::End { .. } = read_more(io, &mut buf).await? {
            return Err(Error::Incomplete(
                "the connection ended before the answer's head was complete",
            ));
        }
    };
    if status != 200 {
        return Err(Error::Status(status));
    }
    let too_large = || Error::TooLarge { limit };
    match framing {
        Framing::Length(length) => {
            if length > limit {
                return Err(too_large());
            }
            while buf.len() < length {
                if let Read::End { .. } = read_more(io, &mut buf).await? {
                    return Err(Error::Incomplete(
                        "the connection ended before the announced Content-Length",
                    ));
                }
            }
            buf.truncate(length);
            Ok(buf)
        }
        Framing::Chunked => {
            let mut decoder = Chunked::default();
            loop {
                if decoder.advance(&mut buf, limit)? {
                    return Ok(decoder.body);
                }
                if let Read::End { .. } = read_more(io, &mut buf).await? {
                    return Err(Error::Incomplete(
                        "the connection ended before the last chunk",
                    ));
                }
            }
        }
        Framing::Close => loop {
            if buf.len() > limit {
                return Err(too_large());
            }
            match read_more(io, &mut buf).await? {
                Read::Data => {}
                Read::End { .. } if buf.len() > limit => return Err(too_large()),
                Read::End { clean: true } => return Ok(buf),
                // 1.2 managers end every answer this way; 1.2's client took the body as it
                // was. Only a body that is complete JSON is taken: a cut one is refused.
                Read::End { clean: false } => {
                    if raw || serde_json::from_slice::<serde::de::IgnoredAny>(&buf).is_ok() {
                        return Ok(buf);
                    }
                    return Err(Error::Incomplete(
                        "the connection ended without TLS close_notify and the body is not \
                         complete JSON",
                    ));
                }
            }
        },
    }
}

/// The status, framing and length of the head at the start of `buf`, once complete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, Framing, usize)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => {
            return Err(Error::Protocol(format!("malformed answer head: {error}")));
        }
    };
    let status = response.code.unwrap_or_default();
    let mut chunked = None;
    let mut length: Option<usize> = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides; anything but chunked last is ended by the close.
            let value = String::from_utf8_lossy(header.value);
            let last = value.rsplit(',').next().unwrap_or_default().trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .ok_or_else(|| Error::Protocol("invalid Content-Length".to_owned()))?;
            if length.is_some_and(|seen| seen != value) {
                return Err(Error::Protocol("conflicting Content-Length".to_owned()));
            }
            length = Some(value);
        }
    }
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
    let framing = match (chunked, length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) | (None, None) => Framing::Close,
        (None, Some(length)) => Framing::Length(length),
    };
    Ok(Some((status, framing, head_len)))
}

/// An incremental chunked decoder: consumes whole chunks from the front of the raw buffer,
/// so the buffer never holds more than one chunk.
#[derive(Debug, Default)]
struct Chunked {
    body: Vec<u8>,
    /// The last chunk was seen; the trailer section is being read.
    trailers: bool,
}

impl Chunked {
    /// Consumes what it can of `raw`; `true` once the answer is complete.
    fn advance(&mut self, raw: &mut Vec<u8>, limit: usize) -> Result<bool, Error> {
        let mut pos = 0;
        let result = loop {
            let rest = &raw[pos..];
            let Some(line_end) = find_crlf(rest) else {
                let longest = if self.trailers {
                    MAX_HEAD_BYTES
                } else {
                    MAX_CHUNK_LINE
                };
                if rest.len() > longest {
                    break Err(Error::Protocol("chunk line too long".to_owned()));
                }
                break Ok(false);
            };
            let line = &rest[..line_end];
            if self.trailers {
                pos += line_end + 2;
                if line.is_empty() {
                    break Ok(true);
                }
                continue;
            }
            let size_text = std::str::from_utf8(line)
                .ok()
                .map(|text| text.split(';').next().unwrap_or_default().trim());
            let Some(size) = size_text.and_then(|text| usize::from_str_radix(text, 16).ok()) else {
                break Err(Error::Protocol("invalid chunk size".to_owned()));
            };
            if size == 0 {
                pos += line_end + 2;
                self.trailers = true;
                continue;
            }
            if size > limit.saturating_sub(self.body.len()) {
                break Err(Error::TooLarge { limit });
            }
            let data_start = line_end + 2;
            if rest.len() < data_start + size + 2 {
                break Ok(false);
            }
            if &rest[data_start + size..data_start + size + 2] != b"\r\n" {
                break Err(Error::Protocol("chunk not followed by CRLF".to_owned()));
            }
            self.body
                .extend_from_slice(&rest[data_start..data_start + size]);
            pos += data_start + size + 2;
        };
        raw.drain(..pos);
        result
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|pair| pair == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Hands out `parts` one read at a time, then ends cleanly or as rustls reports a TCP
    /// end without close_notify.
    struct Scripted {
        parts: std::collections::VecDeque<Vec<u8>>,
        clean: bool,
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.parts.pop_front() {
                Some(mut part) => {
                    let n = part.len().min(buf.remaining());
                    buf.put_slice(&part[..n]);
                    if n < part.len() {
                        part.drain(..n);
                        self.parts.push_front(part);
                    }
                    Poll::Ready(Ok(()))
                }
                None if self.clean => Poll::Ready(Ok(())),
                None => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                ))),
            }
        }
    }

    async fn read(parts: &[&str], clean: bool) -> Result<Vec<u8>, Error> {
        let mut io = Scripted {
            parts: parts.iter().map(|part| part.as_bytes().to_vec()).collect(),
            clean,
        };
        read_answer(&mut io, 64, false).await
    }

    fn body(answer: Result<Vec<u8>, Error>) -> String {
        String::from_utf8(answer.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_1_2_answer_ends_with_the_connection() {
        let head = "HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.3 Python/2.6.6\r\nContent-type: application/json\r\n\r\n";
        let json = r#"{"result": {"state": "INIT"}, "error": null, "id": "1"}"#;
        for clean in [false, true] {
            assert_eq!(
                body(read(&[head, &json[..9], &json[9..]], clean).await),
                json
            );
        }
        // Cut mid-JSON without close_notify: refused; with close_notify the server meant it.
        let cut = read(&[head, &json[..20]], false).await.unwrap_err();
        assert!(matches!(cut, Error::Incomplete(_)), "{cut}");
        assert_eq!(body(read(&[head, "not json"], true).await), "not json");
        assert!(matches!(
            read(&[head, "not json"], false).await,
            Err(Error::Incomplete(_))
        ));
        // Nothing after the head, and a head cut short.
        assert!(matches!(
            read(&[head], false).await,
            Err(Error::Incomplete(_))
        ));
        assert!(matches!(
            read(&["HTTP/1.0 200 OK\r\nContent-ty"], true).await,
            Err(Error::Incomplete(_))
        ));
        // Larger than the limit.
        let big = format!("[{}]", "1,".repeat(40) + "1");
        assert!(matches!(
            read(&[head, &big], false).await,
            Err(Error::TooLarge { limit: 64 })
        ));
    }

    #[tokio::test]
    async fn lengths_and_chunks_frame_the_body() {
        let framed = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
        // Complete by its length: an end without close_notify afterwards does not matter,
        // and bytes beyond the length are not part of the body.
        assert_eq!(
            body(read(&[framed, "\"hello\"junk"], false).await),
            "\"hello\""
        );
        assert_eq!(
            body(read(&[framed, "\"he", "llo\""], false).await),
            "\"hello\""
        );
        assert!(matches!(
            read(&[framed, "\"hel"], true).await,
            Err(Error::Incomplete(_))
        ));
        assert!(matches!(
            read(&["HTTP/1.1 200 OK\r\nContent-Length: 65\r\n\r\n"], false).await,
            Err(Error::TooLarge { .. })
        ));
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            body(
                read(
                    &[
                        chunked,
                        "4\r\n{\"a\"\r\n",
                        "3;x=y\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n"
                    ],
                    false
                )
                .await
            ),
            "{\"a\": 1}"
        );
        // Split everywhere, with a trailer.
        let pieces = [
            "4\r",
            "\n{\"a\"",
            "\r\n3\r\n: 1\r",
            "\n1\r\n}\r\n0\r\nX-T: 1\r\n",
            "\r\n",
        ];
        let mut parts = vec![chunked];
        parts.extend(pieces);
        assert_eq!(body(read(&parts, false).await), "{\"a\": 1}");
        // No last chunk: incomplete even though the JSON would parse.
        assert!(matches!(
            read(&[chunked, "8\r\n{\"a\": 1}\r\n"], true).await,
            Err(Error::Incomplete(_))
        ));
        assert!(matches!(
            read(&[chunked, "zz\r\n"], false).await,
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            read(&[chunked, "41\r\n"], false).await,
            Err(Error::TooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn other_statuses_and_interim_answers() {
        assert!(matches!(
            read(&["HTTP/1.0 500 Internal Server Error\r\n\r\nboom"], false).await,
            Err(Error::Status(500))
        ));
        assert_eq!(
            body(read(&["HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"], false).await),
            "{}"
        );
        assert!(matches!(
            read(&["SSH-2.0-OpenSSH\r\n\r\n"], false).await,
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            read(
                &["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}"],
                false
            )
            .await,
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn targets_and_encodings() {
        let target = Target::parse("https://127.0.0.3:8443/").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.target.as_str()),
            ("127.0.0.3", 8443, "/")
        );
        assert_eq!(target.host_header(), "127.0.0.3:8443");
        let target = Target::parse("https://[::1]/?method=x").unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.target.as_str()),
            ("::1", 443, "/?method=x")
        );
        assert_eq!(target.host_header(), "[::1]:443");
        assert_eq!(Target::parse("HTTPS://m").unwrap().target, "/");
        let plain = Target::parse("http://m:8475/").unwrap();
        assert_eq!((plain.tls, plain.port), (false, 8475));
        assert_eq!(Target::parse("http://m").unwrap().port, 80);
        for bad in [
            "https://",
            "ftp://m/",
            "https://m:x/",
            "https://u@m/",
            "https://[::1/",
            "https://m/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            form_encode(r#"{"serviceNodeId": "a b&c"}"#),
            "%7B%22serviceNodeId%22%3A+%22a+b%26c%22%7D"
        );
        let head = request_head(
            "POST",
            &Target::parse("https://m:1/").unwrap(),
            "application/json",
            Some(2),
        );
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST / HTTP/1.1\r\nHost: m:1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\
             Accept-Encoding: identity\r\nConnection: close\r\n\r\n"
        );
        let (body, content_type) = multipart(
            &[("method", "load_dump")],
            "mysqldump_file",
            "a\"b.sql",
            b"DATA",
        );
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"method\"\r\n\r\nload_dump\r\n"
        )));
        assert!(text.contains("name=\"mysqldump_file\"; filename=\"a%22b.sql\"\r\nContent-Type: application/octet-stream\r\n\r\nDATA\r\n"));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    }
}
