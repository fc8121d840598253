//! The control socket: newline-delimited JSON on a Unix socket (the protocol is in
//! `ncd_config::control`), with the caller identified by the kernel.
//!
//! The socket is world-connectable (0666) and every verb is authorised here from
//! the peer's credentials (`SO_PEERCRED`), which a client cannot forge: anyone
//! may read status and check names; changing the commitment needs root or the
//! person who started the period. A hostile client gets little: lines are capped
//! at `MAX_LINE_BYTES`, an idle or half-sent request is dropped after
//! [`IDLE_TIMEOUT`], at most [`MAX_CONNECTIONS`] are served at once, and no one
//! user may hold more than [`MAX_PER_USER`] of them — so another local user cannot
//! crowd out the person who needs to confirm an unlock inside its window.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ncd_config::control::{Answer, ErrorCode, MAX_LINE_BYTES, Method, PROTOCOL_VERSION, Request, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_CONNECTIONS: usize = 256;
pub const MAX_PER_USER: usize = 16;

/// Answers requests; implemented by the daemon.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// May `uid` call `method`?
    fn authorize(&self, uid: u32, method: &Method) -> Result<(), String>;
    async fn handle(&self, uid: u32, method: Method) -> Result<Answer, (ErrorCode, String)>;
}

/// Binds the socket, replacing a stale one left by a crash but never a live one.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!("another ncdd is already answering on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("cannot open {} to local users", path.display()))?;
    Ok(listener)
}

/// Serves connections until the task is dropped.
pub async fn serve(listener: UnixListener, handler: Arc<dyn Handler>, path: PathBuf) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_user: Arc<std::sync::Mutex<HashMap<u32, usize>>> = Arc::default();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(uid) = stream.peer_cred().map(|c| c.uid()) else {
            continue;
        };
        // Over a limit: close at once rather than queue without bound.
        let Some(user_slot) = UserSlot::take(&per_user, uid) else {
            tracing::debug!(uid, "a user holds too many control connections; closing one");
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(socket = %path.display(), "too many control connections; closing one");
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Err(error) = connection(stream, uid, handler).await {
                tracing::debug!(%error, "control connection ended");
            }
            drop((permit, user_slot));
        });
    }
}

/// One of a user's connection slots, given back when dropped.
struct UserSlot {
    counts: Arc<std::sync::Mutex<HashMap<u32, usize>>>,
    uid: u32,
}

impl UserSlot {
    fn take(counts: &Arc<std::sync::Mutex<HashMap<u32, usize>>>, uid: u32) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let held = map.entry(uid).or_default();
        if *held >= MAX_PER_USER {
            return None;
        }
        *held += 1;
        Some(Self {
            counts: counts.clone(),
            uid,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = map.get_mut(&self.uid) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.uid);
            }
        }
    }
}

async fn connection(stream: UnixStream, uid: u32, handler: Arc<dyn Handler>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE_BYTES as u64 + 1);
        let read = tokio::time::timeout(IDLE_TIMEOUT, limited.read_until(b'\n', &mut line))
            .await
            .context("idle")??;
        if read == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE_BYTES {
            let response = Response::err(
                0,
                ErrorCode::BadRequest,
                format!("request longer than {MAX_LINE_BYTES} bytes"),
            );
            send(&mut write, &response).await?;
            return Ok(());
        }
        let response = answer(&line, uid, handler.as_ref()).await;
        send(&mut write, &response).await?;
    }
}

async fn answer(line: &[u8], uid: u32, handler: &dyn Handler) -> Response {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(error) => {
            // Echo the id when one can be found, so a client can match the error.
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                .unwrap_or(0);
            return Response::err(id, ErrorCode::BadRequest, format!("not a request: {error}"));
        }
    };
    if request.v != PROTOCOL_VERSION {
        return Response::err(
            request.id,
            ErrorCode::BadRequest,
            format!(
                "protocol version {} is not supported (this ncdd speaks {PROTOCOL_VERSION})",
                request.v
            ),
        );
    }
    if let Err(message) = handler.authorize(uid, &request.method) {
        tracing::info!(uid, method = ?std::mem::discriminant(&request.method), "refused: {message}");
        return Response::err(request.id, ErrorCode::Forbidden, message);
    }
    match handler.handle(uid, request.method).await {
        Ok(answer) => Response::answer(request.id, &answer),
        Err((code, message)) => Response::err(request.id, code, message),
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec(response)?;
    bytes.push(b'\n');
    tokio::time::timeout(IDLE_TIMEOUT, write.write_all(&bytes))
        .await
        .context("client not reading")??;
    Ok(())
}
