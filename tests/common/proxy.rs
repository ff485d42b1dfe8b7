//! A small HTTP proxy in front of a provider (localstripe) for the tests: it forwards each
//! request, then passes the answer on, holds it back for a while, or loses it, as `fate`
//! decides from the request. One request per connection (both sides are told to close).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What becomes of a provider's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Pass,
    /// Passed on after this long (a slow provider).
    Delay(Duration),
    /// Never passed on: the connection closes with no answer (the request did reach the
    /// provider, which did the work).
    Lose,
}

pub struct Proxy {
    pub url: String,
}

/// Starts a proxy to `upstream` (`http://host:port`), living as long as the process.
pub fn start(upstream: &str, fate: impl Fn(&str, &[u8]) -> Fate + Send + Sync + 'static) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let fate = Arc::new(fate);
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, fate) = (upstream.clone(), fate.clone());
            thread::spawn(move || {
                let _ = relay(client, &upstream, &*fate);
            });
        }
    });
    Proxy { url }
}

fn relay(
    mut client: TcpStream,
    upstream: &str,
    fate: &(dyn Fn(&str, &[u8]) -> Fate + Send + Sync),
) -> std::io::Result<()> {
    let (head, body) = read_request(&mut client)?;
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let fate = fate(&request_line, &body);
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(closing(&head).as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    match fate {
        Fate::Lose => return Ok(()),
        Fate::Delay(wait) => thread::sleep(wait),
        Fate::Pass => {}
    }
    let split = find(&answer, b"\r\n\r\n").map_or(answer.len(), |i| i + 4);
    let answer_head = String::from_utf8_lossy(&answer[..split]).to_string();
    client.write_all(closing(answer_head.trim_end_matches("\r\n")).as_bytes())?;
    client.write_all(&answer[split..])?;
    client.flush()
}

/// A head, with `Connection: close` instead of whatever it said, ending in its blank line.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

fn read_request(client: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let n = client.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(i) = find(&data, b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&data[..end]).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = data[end + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Ok((head, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
