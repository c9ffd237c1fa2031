//! A fault-injecting TCP proxy for HTTP/1.1, put between `lifemap` and the real S3 test server.
//!
//! It reads each request's head (and, by its `Content-Length`, its body) so that a fault hits
//! one request, not a whole keep-alive connection; responses are copied back untouched. Which
//! request gets which fault is up to a rule the test gives (and may change between runs).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub content_length: usize,
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Answer `503 SlowDown` (S3's throttling answer) without forwarding, and close.
    SlowDown,
    /// Close the connection without an answer.
    Drop,
    /// Hold it unanswered for this long, then close.
    Stall(Duration),
    /// Forward the head and this many bytes of the body, then cut both connections.
    Cut(usize),
}

type Rule = Box<dyn FnMut(&Request) -> Fault + Send>;

struct Shared {
    rule: Mutex<Rule>,
    injected: Mutex<Vec<(Request, Fault)>>,
}

pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Start a proxy to `upstream` (`http://host:port`) that forwards everything.
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let shared = Arc::new(Shared {
            rule: Mutex::new(Box::new(|_: &Request| Fault::Pass)),
            injected: Mutex::new(Vec::new()),
        });
        let serving = Arc::clone(&shared);
        let address = super::serve_on_loopback(move |listener| async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, upstream.clone(), Arc::clone(&serving)));
            }
        });
        FaultProxy {
            endpoint: format!("http://{address}"),
            shared,
        }
    }

    /// Decide the fault of every request from now on.
    pub fn set_rule(&self, rule: impl FnMut(&Request) -> Fault + Send + 'static) {
        *self.shared.rule.lock().expect("rule") = Box::new(rule);
    }

    /// Every fault injected so far, with its request.
    pub fn injected(&self) -> Vec<(Request, Fault)> {
        self.shared.injected.lock().expect("injected").clone()
    }
}

const SLOW_DOWN_BODY: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

/// Aborts the response copier when the connection is done with.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(client: TcpStream, upstream_address: String, shared: Arc<Shared>) {
    let (mut from_client, to_client) = client.into_split();
    let to_client = Arc::new(tokio::sync::Mutex::new(to_client));
    let mut upstream: Option<(OwnedWriteHalf, AbortOnDrop)> = None;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(position) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
                break position + 4;
            }
            let mut chunk = [0u8; 16 * 1024];
            match from_client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = pending.drain(..head_end).collect();
        let Some(request) = parse_head(&head) else {
            return;
        };
        let fault = {
            let mut rule = shared.rule.lock().expect("rule");
            (*rule)(&request)
        };
        if fault != Fault::Pass {
            shared.injected.lock().expect("injected").push((request.clone(), fault));
        }
        match fault {
            Fault::Drop => return,
            Fault::Stall(duration) => {
                tokio::time::sleep(duration).await;
                return;
            }
            Fault::SlowDown => {
                if forward_body(&mut from_client, &mut pending, None, request.content_length)
                    .await
                    .is_err()
                {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SLOW_DOWN_BODY}",
                    SLOW_DOWN_BODY.len()
                );
                let mut writer = to_client.lock().await;
                let _ = writer.write_all(response.as_bytes()).await;
                let _ = writer.shutdown().await;
                return;
            }
            Fault::Pass | Fault::Cut(_) => {}
        }
        if upstream.is_none() {
            let Ok(server) = TcpStream::connect(&upstream_address).await else {
                return;
            };
            let _ = server.set_nodelay(true);
            let (mut from_server, to_server) = server.into_split();
            let writer = Arc::clone(&to_client);
            let copier = tokio::spawn(async move {
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    match from_server.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if writer.lock().await.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = writer.lock().await.shutdown().await;
            });
            upstream = Some((to_server, AbortOnDrop(copier)));
        }
        let Some((to_server, _)) = upstream.as_mut() else {
            return;
        };
        let body_to_send = match fault {
            Fault::Cut(bytes) => bytes.min(request.content_length),
            _ => request.content_length,
        };
        if to_server.write_all(&head).await.is_err()
            || forward_body(&mut from_client, &mut pending, Some(to_server), body_to_send)
                .await
                .is_err()
        {
            return;
        }
        if let Fault::Cut(_) = fault {
            // Both sockets close here: the server sees a short body, the client a reset.
            return;
        }
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let mut content_length = 0;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().ok()?;
        }
    }
    Some(Request {
        method,
        target,
        content_length,
    })
}

/// Send `length` body bytes to the server (or, without one, read and drop them): first what was
/// read past the head, then the rest.
async fn forward_body(
    from_client: &mut tokio::net::tcp::OwnedReadHalf,
    pending: &mut Vec<u8>,
    mut to_server: Option<&mut OwnedWriteHalf>,
    length: usize,
) -> std::io::Result<()> {
    let buffered = length.min(pending.len());
    if let Some(server) = to_server.as_mut() {
        server.write_all(&pending[..buffered]).await?;
    }
    pending.drain(..buffered);
    let mut left = length - buffered;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = left.min(chunk.len());
        let n = from_client.read(&mut chunk[..want]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(server) = to_server.as_mut() {
            server.write_all(&chunk[..n]).await?;
        }
        left -= n;
    }
    Ok(())
}
