//! `lark-service sessions [--state S]`: list authorization sessions, as a
//! table or as JSON. Tokens are never shown.

use clap::{Args, ValueEnum};

use super::CliError;
use crate::auth::registry::{ListSessions, SessionView};
use crate::config::Settings;
use crate::domain::SessionState;
use crate::startup::Core;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Only sessions in this state (pending, completed, expired, failed, revoked, reauth_required).
    #[arg(long)]
    pub state: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub async fn run(args: SessionsArgs) -> Result<(), CliError> {
    crate::telemetry::init("warn");
    let state = args
        .state
        .as_deref()
        .map(str::parse::<SessionState>)
        .transpose()
        .map_err(|e| CliError::Config(format!("--state: {e}")))?;
    let settings = Settings::load()?;
    let core = Core::start(&settings).await?;
    let sessions = core
        .registry
        .send(ListSessions {
            state,
            limit: args.limit.clamp(1, 10_000),
        })
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(|e| CliError::Failed(e.to_string()))?;
    match args.format {
        Format::Json => {
            let json = serde_json::to_string_pretty(&sessions)
                .map_err(|e| CliError::Failed(e.to_string()))?;
            println!("{json}");
        }
        Format::Table => print!("{}", table(&sessions)),
    }
    Ok(())
}

/// Fixed-width columns, the widest value setting each column's width.
fn table(sessions: &[SessionView]) -> String {
    let header = [
        "session_id",
        "state",
        "method",
        "open_id",
        "user_name",
        "email",
        "token_expires_at",
    ];
    let rows: Vec<[String; 7]> = sessions
        .iter()
        .map(|s| {
            [
                s.session_id.clone(),
                s.state.to_string(),
                s.auth_method.to_string(),
                s.open_id.clone().unwrap_or_default(),
                s.user_name.clone().unwrap_or_default(),
                s.email.clone().unwrap_or_default(),
                s.token_expires_at
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[&str]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(&header);
    out.push_str(&format!(
        "{}\n",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    ));
    for r in &rows {
        out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out.push_str(&format!(
        "({} session{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}
