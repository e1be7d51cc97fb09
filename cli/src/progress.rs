//! Progress of long runs, one way for every verb: a bar on a terminal (done, rate, time left),
//! and where stderr is not a terminal (a job log, CI) a plain line every [`LOG_EVERY`].

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a log gets a progress line.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Progress counted in `unit` (`rows`, `patients`, `shards`, `models`), labelled `what`.
pub fn bar(what: &str, unit: &str) -> ProgressBar {
    let terminal = std::io::stderr().is_terminal();
    let (template, target) = if terminal {
        (
            format!("{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left)"),
            ProgressDrawTarget::stderr(),
        )
    } else {
        (
            format!("{{msg}}: {{human_pos}} of {{human_len}} {unit} ({{per_sec}}, about {{eta}} left)"),
            ProgressDrawTarget::term_like_with_hz(Box::new(LogLines { last: Mutex::new(Instant::now()) }), 1),
        )
    };
    let style = ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> ");
    let bar = ProgressBar::with_draw_target(None, target).with_style(style).with_message(what.to_string());
    bar.enable_steady_tick(Duration::from_secs(1));
    bar
}

/// A draw target for logs: the bar's line written out whole every [`LOG_EVERY`] (a run shorter
/// than that logs none), and the cursor movements a terminal would get ignored.
#[derive(Debug)]
struct LogLines {
    last: Mutex<Instant>,
}

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if s.trim().is_empty() || last.elapsed() < LOG_EVERY {
            return Ok(());
        }
        *last = Instant::now();
        writeln!(std::io::stderr(), "{}", s.trim_end())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
