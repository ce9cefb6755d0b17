//! Progress of long command-line work: a bar when stdout is a terminal, a
//! plain line every few seconds otherwise, so a person watching sees it move
//! and a log file or CI output gets a readable line rather than escape codes.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often the plain form prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub enum ProgressDisplay {
    Bar(ProgressBar),
    Plain { what: String, last: Option<Instant> },
}

impl ProgressDisplay {
    /// A display for `what` (e.g. "users"), chosen by whether stdout is a terminal.
    pub fn new(what: &str) -> Self {
        if std::io::stdout().is_terminal() {
            let bar = ProgressBar::new(0);
            // The template is a constant; should it ever fail to parse,
            // the default style still shows the count.
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}) {{msg}}"
            )) {
                bar.set_style(style);
            }
            Self::Bar(bar)
        } else {
            Self::Plain {
                what: what.to_owned(),
                last: None,
            }
        }
    }

    /// Show `done` of `total`, with a short note (e.g. counts so far).
    pub fn update(&mut self, done: u64, total: u64, note: &str) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message(note.to_owned());
            }
            Self::Plain { what, last } => {
                if last.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
                    return;
                }
                *last = Some(Instant::now());
                println!("{done}/{total} {what} {note}");
            }
        }
    }

    /// Remove the bar (the caller prints the outcome).
    pub fn finish(self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
