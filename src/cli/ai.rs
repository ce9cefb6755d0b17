//! `lark-service ai <open_id> <prompt>`: ask the AI as that user, with
//! their own token (refreshed first if it is about to expire), and print
//! the answer as the quickstart's AI test does.

use clap::Args;

use super::CliError;
use crate::apaas::apaas_client::AiResult;
use crate::apaas::error::ApaasError;
use crate::config::Settings;
use crate::startup::Core;

#[derive(Debug, Args)]
pub struct AiArgs {
    /// The user's open_id (`ou_…`); the call runs as them.
    pub open_id: String,
    /// What to ask.
    pub prompt: String,
    /// Print the result as JSON instead.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: AiArgs) -> Result<(), CliError> {
    crate::telemetry::init("warn");
    let settings = Settings::load()?;
    let core = Core::start(&settings).await?;
    if !args.json {
        println!("🤖 Calling AI API as {}...", args.open_id);
    }
    let result = core
        .call_ai_api(&args.open_id, &args.prompt)
        .await
        .map_err(|e| match e {
            ApaasError::NotConfigured | ApaasError::BadInput(_) => CliError::Config(e.to_string()),
            other => CliError::Failed(other.to_string()),
        })?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&result).map_err(|e| CliError::Failed(e.to_string()))?;
        println!("{json}");
    } else {
        print!("{}", render(&result));
    }
    Ok(())
}

/// The answer, as the quickstart prints it.
pub fn render(result: &AiResult) -> String {
    let usage = &result.usage;
    format!(
        "✅ AI API call successful!\n   Response: {}\n   Usage: prompt {} chars, response {} chars, {} polls, {} ms\n   Run ID: {}\n   Session ID: {}\n",
        result.response,
        usage.prompt_chars,
        usage.response_chars,
        usage.polls,
        usage.duration_ms,
        result.run_id,
        result.session_id
    )
}
