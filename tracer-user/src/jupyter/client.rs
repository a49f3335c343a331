//! Just enough of the Jupyter messaging protocol (v5, over ZeroMQ) to run
//! reprotrace's code in a kernel (its cell hook; its Dask clients joining an
//! audit): one `execute_request` on its shell channel, `silent` and kept out
//! of its history, signed with the kernel's key, and its `execute_reply`. Sent from here, so nothing runs in the kernel's
//! environment but the request itself, and it can reach a kernel the moment
//! it listens, before its client's first cell.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::{ConnectionInfo, JupyterError};

/// The frame that separates routing identities from a message.
const DELIMITER: &[u8] = b"<IDS|MSG>";

/// The code that loads the extension from `hook_dir` (only once: the magic
/// prints a notice the second time), quietly, and connects it to the audit's
/// `channel`. Names it binds are deleted again.
fn hook_code(hook_dir: &Path, channel: Option<&Path>) -> String {
    let dir = serde_json::to_string(&hook_dir.to_string_lossy()).unwrap_or_default();
    let connect = match channel {
        Some(channel) => {
            let channel = serde_json::to_string(&channel.to_string_lossy()).unwrap_or_default();
            format!("if hasattr(_reprotrace, 'connect_audit'):\n    _reprotrace.connect_audit({channel})\n")
        }
        None => String::new(),
    };
    format!(
        "import sys as _reprotrace_sys\n\
         if {dir} not in _reprotrace_sys.path:\n    _reprotrace_sys.path.insert(0, {dir})\n\
         del _reprotrace_sys\n\
         import reprotrace as _reprotrace\n\
         if 'reprotrace' not in get_ipython().extension_manager.loaded:\n    \
         _reprotrace._quiet_load = True\n    \
         get_ipython().run_line_magic('load_ext', 'reprotrace')\n\
         {connect}\
         del _reprotrace\n"
    )
}

/// Loads the reprotrace extension from `hook_dir` into the kernel whose
/// connection file is `connection_file`, waiting up to `timeout` for the
/// kernel to listen and answer.
pub async fn install_hook(
    connection_file: &Path,
    hook_dir: &Path,
    channel: Option<&Path>,
    timeout: Duration,
) -> Result<(), JupyterError> {
    let code = hook_code(hook_dir, channel);
    let deadline = Instant::now() + timeout;
    // A kernel still starting can lose a request sent the moment it listens
    // (what jupyter_client's wait_for_ready works around by asking again):
    // until one is answered, the hook is sent again on a new connection, a
    // few times in the first seconds, so that it is in place before a
    // client's first cells. Installing it twice registers it once.
    for _ in 0..EARLY_RESENDS {
        match tokio::time::timeout(EARLY_ANSWER, execute_silently(connection_file, &code, timeout)).await {
            Ok(answered) => return answered,
            Err(_) if Instant::now() < deadline => {}
            Err(_) => break,
        }
    }
    execute_silently(connection_file, &code, deadline.saturating_duration_since(Instant::now())).await
}

/// How long an idle kernel takes at most to answer the hook's request, and
/// how many times it is sent again early (an idle kernel answers in
/// milliseconds; a busy one gets a few more silent requests in its queue).
const EARLY_ANSWER: Duration = Duration::from_millis(250);
const EARLY_RESENDS: usize = 8;

/// Runs `code` in the kernel, silently (no output, no history), and waits up
/// to `timeout` for the kernel to listen and answer (after the cell it may be
/// running: the shell channel is served in order).
pub async fn execute_silently(connection_file: &Path, code: &str, timeout: Duration) -> Result<(), JupyterError> {
    let deadline = Instant::now() + timeout;
    let fail = |reason: String| JupyterError::Inject(reason);
    let info = ConnectionInfo::read(connection_file)?;
    if info.signature_scheme != "hmac-sha256" {
        return Err(fail(format!("unsupported signature scheme {:?}", info.signature_scheme)));
    }
    let endpoint = info.shell_endpoint();
    let mut socket = DealerSocket::new();
    // The kernel may not listen yet: try again at once, so the request is
    // first in line when it does.
    loop {
        match socket.connect(&endpoint).await {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(err) => return Err(fail(format!("cannot reach the kernel at {endpoint}: {err}"))),
        }
    }
    let content = json!({
        "code": code,
        "silent": true,
        "store_history": false,
        "user_expressions": {},
        "allow_stdin": false,
        "stop_on_error": false,
    });
    let (message, msg_id) = signed("execute_request", &content, &info.key)?;
    socket.send(message).await.map_err(|err| fail(format!("sending to the kernel: {err}")))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let received = tokio::time::timeout(left, socket.recv())
            .await
            .map_err(|_| fail(format!("the kernel did not answer within {} s", timeout.as_secs())))?
            .map_err(|err| fail(format!("receiving from the kernel: {err}")))?;
        let Some((header, parent, content)) = parts(received.into_vec()) else { continue };
        if parent["msg_id"] != msg_id || header["msg_type"] != "execute_reply" {
            continue;
        }
        return match content["status"].as_str() {
            Some("ok") => Ok(()),
            status => Err(fail(format!(
                "the kernel answered {}: {}: {}",
                status.unwrap_or("nothing"),
                content["ename"].as_str().unwrap_or_default(),
                content["evalue"].as_str().unwrap_or_default()
            ))),
        };
    }
}

/// A message of type `msg_type`, signed with `key`, and its id.
fn signed(msg_type: &str, content: &Value, key: &str) -> Result<(ZmqMessage, String), JupyterError> {
    let now = SystemTime::now();
    let nanos = now.duration_since(SystemTime::UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or_default();
    let session = format!("reprotrace-{}", std::process::id());
    let msg_id = format!("{session}-{nanos:x}");
    let header = json!({
        "msg_id": msg_id,
        "session": session,
        "username": "reprotrace",
        "date": humantime::format_rfc3339_micros(now).to_string(),
        "msg_type": msg_type,
        "version": "5.3",
    });
    let frames: Vec<Bytes> =
        [header, json!({}), json!({}), content.clone()].iter().map(|part| Bytes::from(part.to_string())).collect();
    let signature = match key.is_empty() {
        true => String::new(),
        false => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
                .map_err(|err| JupyterError::Inject(format!("the kernel's key: {err}")))?;
            frames.iter().for_each(|frame| mac.update(frame));
            format!("{:x}", mac.finalize().into_bytes())
        }
    };
    let mut message = vec![Bytes::from_static(DELIMITER), Bytes::from(signature)];
    message.extend(frames);
    let message = ZmqMessage::try_from(message).map_err(|err| JupyterError::Inject(err.to_string()))?;
    Ok((message, msg_id))
}

/// The header, parent header and content of a received message.
fn parts(frames: Vec<Bytes>) -> Option<(Value, Value, Value)> {
    let start = frames.iter().position(|frame| frame.as_ref() == DELIMITER)?;
    let parse = |index: usize| serde_json::from_slice::<Value>(frames.get(start + index)?).ok();
    Some((parse(2)?, parse(3)?, parse(5)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_signed_over_their_four_parts() {
        let (message, msg_id) = signed("execute_request", &json!({"code": "1"}), "secret").expect("a message");
        let frames = message.into_vec();
        assert_eq!(frames[0].as_ref(), DELIMITER);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        frames[2..6].iter().for_each(|frame| mac.update(frame));
        let expected: String = mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(frames[1].as_ref(), expected.as_bytes());
        let header: Value = serde_json::from_slice(&frames[2]).expect("header");
        assert_eq!(
            (header["msg_id"].as_str(), header["msg_type"].as_str()),
            (Some(msg_id.as_str()), Some("execute_request"))
        );
        assert_eq!(parts(frames).map(|(_, _, content)| content["code"].clone()), Some(json!("1")));
    }

    #[test]
    fn the_hook_code_quotes_its_directory_and_channel() {
        let code = hook_code(Path::new("/run/x \"y\""), Some(Path::new("/run/k'.sock")));
        assert!(code.contains(r#""/run/x \"y\"""#), "{code}");
        assert!(code.contains(r#"connect_audit("/run/k'.sock")"#), "{code}");
        assert!(!hook_code(Path::new("/d"), None).contains("connect_audit"));
    }
}
