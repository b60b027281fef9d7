//! The HTTP side of the handshake without I/O: parse a request head (RFC 6455 §4.2.1)
//! and decide between an upgrade and a plain answer.

use base64::Engine as _;
use sha1::{Digest, Sha1};

use crate::WsConfig;

/// Paths on which an upgrade is accepted (query strings are ignored). `/mqtt` is the
/// default of many MQTT clients, `/ws` of many STOMP ones.
pub const PATHS: &[&str] = &["/", "/ws", "/mqtt"];

/// Subprotocol tokens we speak and what they select.
pub const SUBPROTOCOLS: &[(&str, Subprotocol)] = &[
    ("mqtt", Subprotocol::Mqtt),
    ("mqttv3.1", Subprotocol::Mqtt),
    ("v12.stomp", Subprotocol::Stomp),
    ("v11.stomp", Subprotocol::Stomp),
    ("v10.stomp", Subprotocol::Stomp),
];

/// Headers parsed at most; more is `431`.
const HEADERS_MAX: usize = 64;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const INFO: &str = "This is ferromq's WebSocket listener: MQTT (subprotocol mqtt or \
mqttv3.1) and STOMP (v12.stomp, v11.stomp or v10.stomp) over WebSocket, on the paths /, \
/ws and /mqtt.\n";

/// The protocol a WebSocket carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subprotocol {
    /// MQTT 3.1, 3.1.1 or 5.0.
    Mqtt,
    /// STOMP 1.0, 1.1 or 1.2.
    Stomp,
}

/// What to answer a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `101 Switching Protocols`.
    Upgrade {
        /// `Sec-WebSocket-Accept`.
        accept_key: String,
        /// The token echoed in `Sec-WebSocket-Protocol`.
        token: &'static str,
        /// What it selects.
        subprotocol: Subprotocol,
    },
    /// Any other answer; the connection is closed after it.
    Answer {
        /// HTTP status.
        status: u16,
        /// Why, for the log and the body.
        reason: &'static str,
        /// Add `Sec-WebSocket-Version: 13` (to a `426`).
        version_hint: bool,
    },
}

impl Decision {
    fn answer(status: u16, reason: &'static str) -> Self {
        Decision::Answer {
            status,
            reason,
            version_hint: false,
        }
    }

    /// The answer to a request head longer than allowed.
    pub fn too_large() -> Self {
        Self::answer(431, "request head too large")
    }

    /// Appends the HTTP response to `out`.
    pub fn write_response(&self, out: &mut Vec<u8>) {
        match self {
            Decision::Upgrade {
                accept_key, token, ..
            } => {
                out.extend_from_slice(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                      Connection: Upgrade\r\nSec-WebSocket-Accept: ",
                );
                out.extend_from_slice(accept_key.as_bytes());
                out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(b"\r\n\r\n");
            }
            Decision::Answer {
                status,
                reason,
                version_hint,
            } => {
                let body = if *status == 200 {
                    INFO.to_string()
                } else {
                    format!("{reason}\n{INFO}")
                };
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n{}\r\n",
                    status_text(*status),
                    body.len(),
                    if *version_hint {
                        "Sec-WebSocket-Version: 13\r\n"
                    } else {
                        ""
                    },
                );
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(body.as_bytes());
            }
        }
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// Decides what to answer once `buf` holds a whole request head: `None` while more bytes
/// are needed, else the decision and the length of the head.
pub fn decide(buf: &[u8], config: &WsConfig) -> Option<(Decision, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return None,
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => {
            return Some((Decision::too_large(), buf.len()));
        }
        Err(_) => {
            return Some((Decision::answer(400, "malformed HTTP request"), buf.len()));
        }
    };
    Some((decide_request(&req, config), len))
}

fn decide_request(req: &httparse::Request<'_, '_>, config: &WsConfig) -> Decision {
    if req.method != Some("GET") {
        return Decision::answer(405, "only GET is served here");
    }
    let path = req.path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if !PATHS.contains(&path) {
        return Decision::answer(404, "no such path; use /, /ws or /mqtt");
    }
    let headers: &[httparse::Header<'_>] = req.headers;
    let header = |name: &'static str| header_values(headers, name);
    let has_token = |name: &'static str, token: &str| {
        header(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if header("upgrade").next().is_none() {
        // A browser or curl looking at the port.
        return Decision::answer(200, "not a WebSocket request");
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Decision::answer(400, "only WebSocket upgrades are served here");
    }
    if !header("sec-websocket-version").any(|v| v.trim() == "13") {
        return Decision::Answer {
            status: 426,
            reason: "WebSocket version 13 is required",
            version_hint: true,
        };
    }
    let Some(key) = header("sec-websocket-key").next().map(str::trim) else {
        return Decision::answer(400, "Sec-WebSocket-Key is missing");
    };
    let key_ok = base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|k| k.len() == 16);
    if !key_ok {
        return Decision::answer(400, "Sec-WebSocket-Key is not 16 bytes of base64");
    }
    if !config.allowed_origins.is_empty() {
        if let Some(origin) = header("origin").next() {
            let allowed = config
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin.trim()));
            if !allowed {
                return Decision::answer(403, "origin not allowed");
            }
        }
    }
    // The client lists subprotocols in order of preference; take the first we speak.
    let chosen = header("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|offered| SUBPROTOCOLS.iter().find(|(t, _)| *t == offered));
    let Some(&(token, subprotocol)) = chosen else {
        return Decision::answer(
            400,
            "no supported subprotocol offered (Sec-WebSocket-Protocol)",
        );
    };
    Decision::Upgrade {
        accept_key: accept_key(key),
        token,
        subprotocol,
    }
}

/// The values of every header called `name` (case-insensitive), as text.
fn header_values<'a>(
    headers: &'a [httparse::Header<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
fn accept_key(key: &str) -> String {
    let digest = Sha1::new()
        .chain_update(key.as_bytes())
        .chain_update(GUID.as_bytes())
        .finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    fn upgrade(path: &str, protocols: &str, extra: &[&str]) -> Vec<u8> {
        let request_line = format!("GET {path} HTTP/1.1");
        let proto = format!("Sec-WebSocket-Protocol: {protocols}");
        let mut lines = vec![
            request_line.as_str(),
            "Host: localhost",
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        if !protocols.is_empty() {
            lines.push(proto.as_str());
        }
        lines.extend_from_slice(extra);
        req(&lines)
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Upgrade { .. } => 101,
            Decision::Answer { status, .. } => *status,
        }
    }

    #[test]
    fn rfc_6455_sample_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn picks_the_first_supported_subprotocol_in_client_order() {
        let cfg = WsConfig::default();
        let (d, len) = decide(&upgrade("/ws", "v12.stomp, v11.stomp", &[]), &cfg).unwrap();
        assert!(len > 0);
        assert!(matches!(
            d,
            Decision::Upgrade {
                token: "v12.stomp",
                subprotocol: Subprotocol::Stomp,
                ..
            }
        ));
        let (d, _) = decide(&upgrade("/mqtt?x=1", "foo, mqttv3.1, mqtt", &[]), &cfg).unwrap();
        assert!(matches!(
            d,
            Decision::Upgrade {
                token: "mqttv3.1",
                subprotocol: Subprotocol::Mqtt,
                ..
            }
        ));
        let mut out = Vec::new();
        d.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
    }

    #[test]
    fn refusals_have_their_status() {
        let cfg = WsConfig {
            allowed_origins: vec!["https://app.example".into()],
            ..WsConfig::default()
        };
        let cases: &[(Vec<u8>, u16)] = &[
            (upgrade("/", "", &[]), 400),
            (upgrade("/", "chat, superchat", &[]), 400),
            (upgrade("/other", "mqtt", &[]), 404),
            (upgrade("/", "mqtt", &["Origin: https://evil.example"]), 403),
            (upgrade("/", "mqtt", &["Origin: https://app.example"]), 101),
            (req(&["GET / HTTP/1.1", "Host: x"]), 200),
            (req(&["POST / HTTP/1.1", "Host: x"]), 405),
            (
                req(&[
                    "GET / HTTP/1.1",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version: 8",
                    "Sec-WebSocket-Protocol: mqtt",
                ]),
                426,
            ),
            (
                req(&[
                    "GET / HTTP/1.1",
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Key: short",
                    "Sec-WebSocket-Version: 13",
                    "Sec-WebSocket-Protocol: mqtt",
                ]),
                400,
            ),
            (b"\x16\x03\x01garbage\r\n\r\n".to_vec(), 400),
        ];
        for (bytes, want) in cases {
            let (d, _) = decide(bytes, &cfg).expect("a complete head");
            assert_eq!(status(&d), *want, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn every_prefix_of_a_request_needs_more_bytes() {
        let cfg = WsConfig::default();
        let full = upgrade("/", "mqtt", &[]);
        for cut in 0..full.len() {
            assert!(decide(&full[..cut], &cfg).is_none(), "cut at {cut}");
        }
        // Bytes after the head (the first frame) are not part of it.
        let mut pipelined = full.clone();
        pipelined.extend_from_slice(b"\x82\x80");
        assert_eq!(decide(&pipelined, &cfg).unwrap().1, full.len());
    }

    #[test]
    fn plain_get_explains_the_port() {
        let (d, _) = decide(&req(&["GET / HTTP/1.1", "Host: x"]), &WsConfig::default()).unwrap();
        let mut out = Vec::new();
        d.write_response(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with(INFO), "{text}");
    }
}
