//! `lark-service send-auth-card <open_id>`: create a session and send the
//! user the authorization card. The click is completed by the running
//! `serve` (which holds the long connection), through the shared database.

use clap::Args;

use super::CliError;
use crate::auth::card::AuthCardOptions;
use crate::auth::card_auth::SendAuthCard;
use crate::auth::error::AuthError;
use crate::config::Settings;
use crate::startup::Core;

#[derive(Debug, Args)]
pub struct SendAuthCardArgs {
    /// The user's open_id (`ou_…`).
    pub open_id: String,
    /// Explain in detail what is granted, where it is kept and how to revoke it.
    #[arg(long)]
    pub detailed: bool,
    /// A note shown on the card.
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Send this card template instead of the built-in card.
    #[arg(long, value_name = "ID")]
    pub template_id: Option<String>,
    /// Link a privacy policy at the bottom of the card.
    #[arg(long, value_name = "URL")]
    pub privacy_url: Option<String>,
}

pub async fn run(args: SendAuthCardArgs) -> Result<(), CliError> {
    crate::telemetry::init("warn");
    let settings = Settings::load()?;
    let ttl_minutes = settings.auth.session_ttl.as_secs() / 60;
    let core = Core::start(&settings).await?;
    let sent = core
        .card_auth
        .send(SendAuthCard {
            open_id: args.open_id,
            options: AuthCardOptions {
                include_detailed_description: args.detailed,
                auth_card_template_id: args.template_id,
                custom_message: args.message,
                privacy_policy_url: args.privacy_url,
            },
        })
        .await
        .map_err(|e| CliError::Failed(e.to_string()))?
        .map_err(|e| match e {
            AuthError::BadInput(m) => CliError::Config(m),
            other => CliError::Failed(format!(
                "{other}; check APP_ID/APP_SECRET and that the user can see the bot"
            )),
        })?;
    println!("✅ Authorization card sent!");
    println!("   Message ID: {}", sent.message_id);
    println!("   Session ID: {}", sent.session_id);
    println!(
        "   Expires in: {ttl_minutes} minutes (at {} UTC)",
        sent.expires_at.format("%Y-%m-%d %H:%M:%S")
    );
    println!();
    println!("📱 Please check Feishu and click 'Authorize' button");
    Ok(())
}
