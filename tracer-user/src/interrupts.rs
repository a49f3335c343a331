//! Ctrl-C, SIGTERM and SIGHUP, as one stream an audit (or the daemon) waits
//! on: the first is passed on to the command, a second one means "stop
//! waiting".

use rustix::process::{kill_process, Pid, Signal};
use tokio::signal::unix::{signal, SignalKind};

use crate::event::Tid;

#[derive(Debug, thiserror::Error)]
#[error("cannot install signal handlers: {0}")]
pub struct InterruptsError(#[source] std::io::Error);

pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    forwarded: bool,
}

impl Signals {
    pub fn new() -> Result<Self, InterruptsError> {
        let install = |kind| signal(kind).map_err(InterruptsError);
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
            hangup: install(SignalKind::hangup())?,
            forwarded: false,
        })
    }

    /// The next signal received.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::INT,
            _ = self.terminate.recv() => Signal::TERM,
            _ = self.hangup.recv() => Signal::HUP,
        }
    }

    /// Passes the first signal to `target`; false when the user asked a second
    /// time (or there is nobody to pass it to) and the audit should stop waiting.
    pub fn forward(&mut self, signal: Signal, target: Option<Tid>) -> bool {
        let Some(target) = target.filter(|_| !self.forwarded) else { return false };
        self.forwarded = true;
        eprintln!("reprotrace: passing the signal on to the command; send it again to stop waiting");
        if let Some(pid) = Pid::from_raw(target as i32) {
            // The command may have exited meanwhile: then nothing is to be passed on.
            let _ = kill_process(pid, signal);
        }
        true
    }
}
