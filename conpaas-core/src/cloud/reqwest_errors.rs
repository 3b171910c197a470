//! Reading reqwest's answers and errors, for the drivers over reqwest that classify failures
//! themselves (OpenNebula, OpenStack): a bounded body, an answer quoted on one line, an error
//! with every source on one line, and whether TLS refused the server.

use reqwest::StatusCode;

/// The body of `response`, at most `max_bytes` of it (a longer one is cut, and then fails to
/// parse, which the caller reports as an unreadable answer).
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max_bytes.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// An answer for an error message: status and the first `max_chars` of the body on one line.
pub(crate) fn quote(body: &str, status: StatusCode, max_chars: usize) -> String {
    let text: String = body
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    if text.is_empty() {
        status.to_string()
    } else {
        format!("{status}: {text}")
    }
}

/// An error and its sources on one line (reqwest's own message is only "error sending request").
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether the request failed because the server's certificate is not trusted: a failure
/// that retrying only delays.
pub(crate) fn untrusted_certificate(error: &reqwest::Error) -> bool {
    rustls_error(error).is_some_and(|tls| {
        matches!(
            tls,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        )
    })
}

/// The rustls error behind a failed request, if TLS is what failed.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    // Bounded walk: sources, and the errors io::Errors wrap (io::Error::source skips the
    // error it wraps, and hyper-rustls wraps tokio-rustls's io::Error in another one).
    let mut pending: Vec<&'a (dyn std::error::Error + 'static)> = vec![error];
    let mut visited = 0;
    while let Some(cause) = pending.pop() {
        visited += 1;
        if visited > 32 {
            break;
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            pending.push(inner);
        }
        if let Some(source) = cause.source() {
            pending.push(source);
        }
    }
    None
}
