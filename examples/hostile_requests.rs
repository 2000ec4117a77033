//! Sends a running `powerpulse serve` many requests with made-up methods
//! and paths (what a hostile local process or a scanner sends), then prints
//! the size of `/metrics` and the server's resident memory, before and
//! after. Every label a made-up request could add to the metrics is one
//! more series kept for good: both numbers must stay flat.
//!
//! ```sh
//! cargo run --release --example hostile_requests -- 127.0.0.1:8080 100000 [SERVER_PID] [TOKEN]
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Requests sent on one connection before it is reopened.
const PER_CONNECTION: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = args.first().map_or("127.0.0.1:8080", String::as_str);
    let count: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let pid = args.get(2).filter(|p| !p.is_empty()).cloned();
    let token = args.get(3).cloned();

    let report = |when: &str| {
        let metrics = get_metrics(addr, token.as_deref());
        let rss = pid.as_deref().map_or("?".to_string(), rss_kib);
        println!(
            "{when}: /metrics {} bytes, {} lines; server RSS {rss} KiB",
            metrics.len(),
            metrics.lines().count()
        );
    };
    report("before");
    let started = Instant::now();
    let mut sent = 0;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    while sent < count {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let batch = PER_CONNECTION.min(count - sent);
        let mut requests = String::new();
        for i in 0..batch {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let close = if i + 1 == batch {
                "close"
            } else {
                "keep-alive"
            };
            // A method of 4–11 letters and a path no route has.
            let method: String = (0..4 + seed % 8)
                .map(|k| (b'A' + ((seed >> (k * 5)) % 26) as u8) as char)
                .collect();
            requests.push_str(&format!(
                "{method} /x/{seed:x} HTTP/1.1\r\nHost: {addr}\r\nConnection: {close}\r\n\r\n"
            ));
        }
        stream.write_all(requests.as_bytes()).expect("send");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        sent += batch;
    }
    println!(
        "sent {sent} requests in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    report("after");
}

fn get_metrics(addr: &str, token: Option<&str>) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    match response.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => String::new(),
    }
}

fn rss_kib(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().trim_end_matches(" kB").to_string())
        })
        .unwrap_or_else(|| "?".into())
}
