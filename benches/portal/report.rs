//! The markdown table: each figure beside its same-run reference, the
//! ratio, the SPEC §8 target and whether it is met.

use std::fmt::Write;

pub struct Row {
    pub what: String,
    pub backend: &'static str,
    pub measured: String,
    pub reference: String,
    pub ratio: String,
    pub target: &'static str,
    pub verdict: Verdict,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// A figure with no target of its own (context for another row).
    Info,
}

impl Verdict {
    pub fn of(met: bool) -> Self {
        if met { Verdict::Met } else { Verdict::Missed }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "",
        }
    }
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, row: Row) {
        println!(
            "{:<58} {:<10} {:>28} | ref {:>26} | {:>8} | {} {}",
            row.what,
            row.backend,
            row.measured,
            row.reference,
            row.ratio,
            row.target,
            row.verdict.text()
        );
        self.rows.push(row);
    }

    pub fn markdown(&self, machine: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Machine: {machine}\n");
        let _ = writeln!(
            out,
            "| what | database | measured | reference (same run) | ratio | SPEC §8 target | verdict |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.what,
                r.backend,
                r.measured,
                r.reference,
                r.ratio,
                r.target,
                r.verdict.text()
            );
        }
        out
    }
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "{cores} cores ({cpu}), {memory_gib:.0} GiB; load generator and server on the same machine; {}",
        chrono::Utc::now().format("%Y-%m-%d")
    )
}
