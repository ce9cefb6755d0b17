//! `CronSchedule`: the sync schedule, parsed once at start-up.
//!
//! Operators write standard 5-field cron (`0 2 * * *`); the scheduler wants a
//! leading seconds field, so a 5-field expression gets `0` seconds prepended.
//! 6-field (seconds first) and 7-field (year last) expressions pass through.

use std::fmt;

use croner::parser::{CronParser, Seconds};

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{expr}` is not a cron expression ({reason}); expected 5 fields like `0 2 * * *` (or 6/7 with seconds/year)")]
pub struct CronError {
    expr: String,
    reason: String,
}

/// A validated schedule in the scheduler's 6/7-field form.
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    original: String,
    normalised: String,
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        let expr = expr.trim();
        let fields = expr.split_whitespace().count();
        let normalised = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_owned(),
            n => {
                return Err(CronError {
                    expr: expr.to_owned(),
                    reason: format!("it has {n} fields"),
                })
            }
        };
        // The same parser settings tokio-cron-scheduler uses, so whatever
        // passes here is accepted there.
        CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(&normalised)
            .map_err(|e| CronError {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            original: expr.to_owned(),
            normalised,
        })
    }

    /// The form to hand to the scheduler.
    pub fn scheduler_expr(&self) -> &str {
        &self.normalised
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({})", self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_cron_gets_seconds() {
        let c = CronSchedule::parse("0 2 * * *").unwrap();
        assert_eq!(c.scheduler_expr(), "0 0 2 * * *");
        assert_eq!(c.to_string(), "0 2 * * *");
    }

    #[test]
    fn six_and_seven_fields_pass_through() {
        assert_eq!(
            CronSchedule::parse("*/5 * * * * *")
                .unwrap()
                .scheduler_expr(),
            "*/5 * * * * *"
        );
        assert!(CronSchedule::parse("0 0 2 * * * 2030").is_ok());
    }

    #[test]
    fn garbage_is_refused_with_the_expression_named() {
        let err = CronSchedule::parse("bad").unwrap_err().to_string();
        assert!(err.contains("`bad`"), "{err}");
        assert!(CronSchedule::parse("61 2 * * *").is_err());
    }
}
