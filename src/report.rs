//! The end-of-run summary: what `analyze --json` prints and what
//! `POST /api/upload?wait=true` answers (the original service's shape plus
//! our counts); and [`terminal_safe`], for every text from an upload that
//! is printed to a terminal.

use std::borrow::Cow;

use serde::Serialize;
use uuid::Uuid;

use crate::analyze::LlmUsage;
use crate::model::Stage;
use crate::pipeline::UploadReport;
use crate::store::stats::EndpointUsage;
use crate::store::{SentimentCounts, UploadSummary};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RunSummary {
    pub success: bool,
    pub message: String,
    pub upload_id: Uuid,
    pub filename: String,
    pub status: Stage,
    pub analyzer: String,
    pub model: String,
    pub conversations_processed: u64,
    /// Every parsed message, autoresponses included.
    pub messages_processed: u64,
    pub autoresponses_filtered: u64,
    pub analyzed: u64,
    pub failed: u64,
    pub skipped_already_processed: u64,
    pub processing_time_seconds: f64,
    pub sentiment: SentimentCounts,
    pub average_satisfaction: Option<f64>,
    pub resolved_rate: Option<f64>,
    pub llm: LlmUsage,
    /// LLM usage and cost by the endpoint that made each outcome.
    pub endpoints: Vec<EndpointUsage>,
    pub warnings: Vec<String>,
    pub warnings_total: u64,
    pub error: Option<String>,
}

impl RunSummary {
    pub fn new(report: &UploadReport, summary: &UploadSummary) -> Self {
        let r = &report.record;
        let success = r.status == Stage::Completed;
        let message = match r.status {
            Stage::Completed => format!(
                "Analysed {} conversations ({} messages) from {}",
                r.counts.conversations, r.counts.messages, r.filename
            ),
            Stage::Cancelled => format!(
                "Cancelled after {} of {} conversations",
                r.counts.processed(),
                r.counts.conversations
            ),
            _ => r
                .error
                .clone()
                .unwrap_or_else(|| "the upload failed".to_string()),
        };
        RunSummary {
            success,
            message,
            upload_id: r.id,
            filename: r.filename.clone(),
            status: r.status,
            analyzer: r.analyzer.clone(),
            model: r.model.clone(),
            conversations_processed: r.counts.conversations,
            messages_processed: r.counts.messages,
            autoresponses_filtered: r.counts.autoresponses_filtered,
            analyzed: r.counts.analyzed,
            failed: r.counts.failed,
            skipped_already_processed: r.counts.skipped_already_processed,
            processing_time_seconds: report.processing_time_seconds,
            sentiment: summary.sentiment,
            average_satisfaction: summary.average_satisfaction,
            resolved_rate: summary.resolved_rate,
            llm: r.llm,
            endpoints: summary.endpoints.clone(),
            warnings: r.warnings.clone(),
            warnings_total: r.warnings_total,
            error: r.error.clone(),
        }
    }

    /// A few human lines for the terminal.
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        // The message names the file, whose name the uploader chose.
        let _ = writeln!(s, "{}", terminal_safe(&self.message));
        let _ = writeln!(
            s,
            "  upload {}  ({}, {} / {}) in {:.2}s",
            self.upload_id,
            self.status.as_str(),
            self.analyzer,
            self.model,
            self.processing_time_seconds
        );
        let _ = writeln!(
            s,
            "  conversations {}  messages {}  autoresponses filtered {}",
            self.conversations_processed, self.messages_processed, self.autoresponses_filtered
        );
        let _ = writeln!(
            s,
            "  analysed {}  failed {}  already processed {}",
            self.analyzed, self.failed, self.skipped_already_processed
        );
        let _ = writeln!(
            s,
            "  sentiment: {} positive, {} neutral, {} negative",
            self.sentiment.positive, self.sentiment.neutral, self.sentiment.negative
        );
        if let Some(avg) = self.average_satisfaction {
            let _ = write!(s, "  average satisfaction {avg:.2}/5");
            if let Some(r) = self.resolved_rate {
                let _ = write!(s, "  resolved {:.0}%", r * 100.0);
            }
            s.push('\n');
        }
        if self.llm.requests > 0 {
            let _ = writeln!(
                s,
                "  LLM: {} requests ({} retries, {} rate-limited), {} prompt + {} completion tokens, ~${:.4}",
                self.llm.requests,
                self.llm.retries,
                self.llm.rate_limited,
                self.llm.prompt_tokens,
                self.llm.completion_tokens,
                self.llm.cost_usd
            );
            if self.llm.cached_tokens > 0 || self.llm.reasoning_tokens > 0 {
                let _ = writeln!(
                    s,
                    "       of which {} prompt tokens cached, {} completion tokens reasoning",
                    self.llm.cached_tokens, self.llm.reasoning_tokens
                );
            }
        }
        if self.endpoints.len() > 1 {
            for e in &self.endpoints {
                let _ = writeln!(
                    s,
                    "    {}: {} analysed, {} failed; {} requests, {} prompt + {} completion tokens, ~${:.4}",
                    e.endpoint,
                    e.analyzed,
                    e.failed,
                    e.llm.requests,
                    e.llm.prompt_tokens,
                    e.llm.completion_tokens,
                    e.llm.cost_usd
                );
            }
        }
        if self.warnings_total > 0 {
            let _ = writeln!(s, "  {} warnings:", self.warnings_total);
            // Warnings quote the file (a header, a field).
            for w in self.warnings.iter().take(10) {
                let _ = writeln!(s, "    {}", terminal_safe(w));
            }
            if self.warnings_total > 10 {
                let _ = writeln!(s, "    … (all in --json output, up to 100)");
            }
        }
        s
    }
}

/// `text` fit to print on one line of a terminal: control characters (an
/// escape sequence starts with ESC; a carriage return, a backspace or a
/// newline rewrites what is shown) and the bidirectional-text controls
/// (which reorder what is shown) are written as Rust escapes (`\u{1b}`,
/// `\n`). A file name or a message from an upload can thus neither drive
/// the terminal nor pass for other output.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    escape_where(text, is_unsafe)
}

/// [`terminal_safe`] for text of several lines: newlines are kept.
pub fn terminal_safe_lines(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && is_unsafe(c))
}

fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn escape_where(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert!(matches!(
            terminal_safe("chats – März.csv"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            terminal_safe("a\u{1b}]0;pwned\u{7}b\u{1b}[2Jc.csv"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{1b}[2Jc.csv"
        );
        assert_eq!(
            terminal_safe("x\r\ny\u{8}\u{7f}\u{9b}"),
            "x\\r\\ny\\u{8}\\u{7f}\\u{9b}"
        );
        // "Trojan source": an override turns what follows around.
        assert_eq!(
            terminal_safe("invoice\u{202e}vsc.exe"),
            "invoice\\u{202e}vsc.exe"
        );
        assert_eq!(
            terminal_safe_lines("one\ntwo\u{1b}[0m"),
            "one\ntwo\\u{1b}[0m"
        );
    }
}
