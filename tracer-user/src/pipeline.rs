//! The user-side pipeline both backends feed: events → tracker → access log,
//! and at the end software identification, data classification and the
//! manifest's trace sections.

use std::time::SystemTime;

use crate::{
    access::AccessLog,
    classify,
    event::Event,
    manifest::{self, TraceSections},
    software::{self, SoftwareIndex},
    tracker::{Pid, ProcessRecord, Tracker, TrackerStats},
};

pub struct Pipeline {
    tracker: Tracker,
    log: AccessLog,
    events: u64,
}

/// What the pipeline learnt, ready for the manifest.
pub struct PipelineOutput {
    pub sections: TraceSections,
    pub events: u64,
    pub tracker: TrackerStats,
    /// The root process as the trace saw it.
    pub root: Option<ProcessRecord>,
    /// What could not be read while identifying software.
    pub warnings: Vec<String>,
}

impl Pipeline {
    /// A pipeline following `root`, started by `ppid` in directory `cwd`.
    pub fn new(root: Pid, ppid: Option<Pid>, cwd: Vec<u8>) -> Self {
        let mut tracker = Tracker::new();
        tracker.add_root(root, ppid, cwd);
        Pipeline { tracker, log: AccessLog::new(), events: 0 }
    }

    pub fn feed(&mut self, event: &Event) {
        self.events += 1;
        if let Some((pid, op)) = self.tracker.apply(event) {
            self.log.record(pid, op);
        }
    }

    /// Classifies the data (stat'ing files as they are now) and renders the sections.
    pub fn finish(
        self,
        rules: &classify::Rules,
        started_at: SystemTime,
        software_index: &mut SoftwareIndex,
    ) -> PipelineOutput {
        let software = software::identify(&self.log, software_index);
        let data = classify::classify(&self.log, rules, &|path| software.owns(path), started_at);
        let processes = self.tracker.processes();
        PipelineOutput {
            sections: manifest::trace_sections(processes, &self.log, &software, &data),
            events: self.events,
            tracker: self.tracker.stats(),
            root: processes.first().cloned(),
            warnings: software.problems.clone(),
        }
    }
}
