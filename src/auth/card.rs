//! The authorization card: what a user sees in Feishu/Lark when the app asks
//! to act for them, and the cards that replace it afterwards.
//!
//! Builders return card JSON (schema 2.0) as a `serde_json::Value`; the IM
//! client serialises it into the message. Every card declares
//! `"config": {"update_multi": true}`, because the platform only lets a card
//! be updated when both the old and the new one say so, and the request
//! card is replaced by the "authorized" or "failed" card.
//!
//! The Authorize button carries `{"action":"authorize","session_id":..}`
//! as its callback value; [`session_id_from_action`] reads it back from the
//! `card.action.trigger` event. That value is all a click brings (lark-oapi
//! `event/callback/model/p2_card_action_trigger.py`: the component's own
//! `value`, the operator, the delayed-update token): the click answers with
//! [`device_code_card`], whose button opens the accounts host's
//! verification link. Cards that leave the session pending (an expired code,
//! a link approved by another account) carry the same callback value on a
//! retry button, so a new click starts a new code for the same session.
//! With an authorize URL (the OAuth redirect flow) the request card's button
//! opens that URL instead and no callback arrives.
//!
//! Text that comes from outside (user names, custom messages, failure
//! reasons) goes into `plain_text` elements, never into markdown, so it
//! cannot inject links or mentions.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

/// The callback `action` of our Authorize button.
pub const AUTHORIZE_ACTION: &str = "authorize";

/// How an auth card looks; part of `POST /admin/auth-cards`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AuthCardOptions {
    /// Add a section on what the token allows, where it is kept and how to
    /// revoke it.
    pub include_detailed_description: bool,
    /// Send this card template instead of the built-in card. The template
    /// receives `session_id`, `authorize_url`, `custom_message` and
    /// `privacy_policy_url` as variables; its button's callback value must
    /// be `{"action":"authorize","session_id":"${session_id}"}`.
    pub auth_card_template_id: Option<String>,
    /// A note from the operator, shown as plain text.
    pub custom_message: Option<String>,
    /// Linked at the bottom of the card; must be an `https://` (or
    /// `http://`) URL.
    pub privacy_policy_url: Option<String>,
}

/// Why card options were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("privacy_policy_url `{0}` is not an http(s) URL")]
    PrivacyPolicyUrl(String),
    #[error("auth_card_template_id must not be empty")]
    EmptyTemplateId,
}

impl AuthCardOptions {
    /// Check operator input before a session is created for it.
    pub fn validate(&self) -> Result<(), CardError> {
        if let Some(raw) = &self.privacy_policy_url {
            if link_target(raw).is_none() {
                return Err(CardError::PrivacyPolicyUrl(raw.clone()));
            }
        }
        if matches!(&self.auth_card_template_id, Some(id) if id.trim().is_empty()) {
            return Err(CardError::EmptyTemplateId);
        }
        Ok(())
    }
}

/// The card asking the user to authorize: the built-in card, or the
/// operator's template when `options` names one. `authorize_url` switches
/// the button from a callback to opening the OAuth page.
pub fn auth_request_card(
    session_id: Uuid,
    options: &AuthCardOptions,
    authorize_url: Option<&str>,
) -> Value {
    if let Some(template_id) = &options.auth_card_template_id {
        return json!({
            "type": "template",
            "data": {
                "template_id": template_id,
                "template_variable": {
                    "session_id": session_id.to_string(),
                    "authorize_url": authorize_url.unwrap_or_default(),
                    "custom_message": options.custom_message.as_deref().unwrap_or_default(),
                    "privacy_policy_url": options.privacy_policy_url.as_deref().unwrap_or_default(),
                },
            },
        });
    }

    let mut elements = vec![markdown(
        "**This app asks to act on your behalf.**\n\n\
         It needs to read your basic profile (name, avatar, email) and to call \
         the AI assistant as you, so that answers respect your own permissions. \
         Nothing is shared until you press **Authorize**.",
    )];
    if options.include_detailed_description {
        elements.push(markdown(
            "- **What is granted:** a user access token for your account, limited to \
             the permissions listed on the consent screen.\n\
             - **Why:** AI requests then run as you and see only what you can see.\n\
             - **Where it is kept:** encrypted at rest and never written to logs.\n\
             - **How to stop it:** ask an administrator to revoke it, or remove the \
             app's access in your account settings.",
        ));
    }
    if let Some(message) = options.custom_message.as_deref().filter(|m| !m.is_empty()) {
        elements.push(plain_text(message));
    }
    let behavior = match authorize_url {
        Some(url) => open_url(url),
        None => authorize_callback(session_id),
    };
    elements.push(json!({
        "tag": "button",
        "element_id": "authorize",
        "type": "primary",
        "text": {"tag": "plain_text", "content": "Authorize"},
        "behaviors": [behavior],
    }));
    if let Some(target) = options.privacy_policy_url.as_deref().and_then(link_target) {
        elements.push(markdown(&format!("[Privacy policy]({target})")));
    }
    card("Authorization request", "blue", elements)
}

/// The card a click is answered with: the user code, how long it is valid
/// and a button opening `verification_uri_complete` (the accounts host's
/// page with the code filled in), where the user approves in Feishu.
pub fn device_code_card(
    user_code: &str,
    verification_uri_complete: &str,
    valid_for: Duration,
) -> Value {
    let minutes = valid_for.as_secs().div_ceil(60).max(1);
    let validity = if minutes == 1 {
        "1 minute".to_owned()
    } else {
        format!("{minutes} minutes")
    };
    card(
        "Approve in Feishu",
        "blue",
        vec![
            markdown(
                "Open the authorization page and approve the request **signed in as yourself**. \
                 The page shows this code; check that it matches:",
            ),
            plain_text(user_code),
            plain_text(&format!("The link is valid for {validity}.")),
            json!({
                "tag": "button",
                "element_id": "open_verification",
                "type": "primary",
                "text": {"tag": "plain_text", "content": "Open the authorization page"},
                "behaviors": [open_url(verification_uri_complete)],
            }),
        ],
    )
}

/// The card for an attempt that ended without completing the session,
/// which stays pending: `reason`, and a button that starts a new code.
pub fn retry_card(session_id: Uuid, reason: &str) -> Value {
    card(
        "Authorization not finished",
        "orange",
        vec![
            plain_text(reason),
            json!({
                "tag": "button",
                "element_id": "authorize",
                "type": "primary",
                "text": {"tag": "plain_text", "content": "Get a new link"},
                "behaviors": [authorize_callback(session_id)],
            }),
        ],
    )
}

/// The card that replaces the request once the user has authorized.
pub fn authorized_card(user_name: &str) -> Value {
    card(
        "Authorization complete",
        "green",
        vec![
            plain_text(&format!("Authorized as {user_name}.")),
            markdown("The app can now act for you. You may close this message."),
        ],
    )
}

/// The card that replaces the request when authorization failed.
pub fn failure_card(reason: &str) -> Value {
    card(
        "Authorization failed",
        "red",
        vec![
            plain_text(reason),
            markdown("Ask for a new authorization card and try again."),
        ],
    )
}

/// The session id in a `card.action.trigger` `action.value`, if the click
/// came from our Authorize button. The value arrives as an object, or as a
/// JSON string from older clients; anything else is some other card's.
pub fn session_id_from_action(value: &Value) -> Option<Uuid> {
    let parsed;
    let object = match value {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            parsed.as_object()?
        }
        Value::Object(o) => o,
        _ => return None,
    };
    if object.get("action")?.as_str()? != AUTHORIZE_ACTION {
        return None;
    }
    Uuid::parse_str(object.get("session_id")?.as_str()?).ok()
}

/// The callback behaviour of our Authorize (and retry) buttons.
fn authorize_callback(session_id: Uuid) -> Value {
    json!({
        "type": "callback",
        "value": {"action": AUTHORIZE_ACTION, "session_id": session_id.to_string()},
    })
}

fn open_url(url: &str) -> Value {
    json!({
        "type": "open_url",
        "default_url": url,
        "pc_url": "",
        "ios_url": "",
        "android_url": "",
    })
}

fn card(title: &str, color: &str, elements: Vec<Value>) -> Value {
    json!({
        "schema": "2.0",
        "config": {"update_multi": true},
        "header": {
            "title": {"tag": "plain_text", "content": title},
            "template": color,
        },
        "body": {"elements": elements},
    })
}

fn markdown(content: &str) -> Value {
    json!({"tag": "markdown", "content": content})
}

fn plain_text(content: &str) -> Value {
    json!({"tag": "div", "text": {"tag": "plain_text", "content": content}})
}

/// An http(s) URL made safe to put inside a markdown link: parentheses
/// and spaces would end the link early.
fn link_target(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return None;
    }
    Some(url.as_str().replace('(', "%28").replace(')', "%29"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Uuid {
        Uuid::parse_str("6f1c2a52-8d4e-4b8e-9a51-3f0c2b7d9e10").unwrap()
    }

    fn elements(card: &Value) -> &Vec<Value> {
        card["body"]["elements"].as_array().unwrap()
    }

    fn button(card: &Value) -> &Value {
        elements(card)
            .iter()
            .find(|e| e["tag"] == "button")
            .unwrap()
    }

    #[test]
    fn request_card_is_an_updatable_schema_2_card_with_a_callback_button() {
        let card = auth_request_card(session(), &AuthCardOptions::default(), None);
        assert_eq!(card["schema"], "2.0");
        assert_eq!(card["config"]["update_multi"], true);
        assert_eq!(card["header"]["title"]["content"], "Authorization request");
        let behavior = &button(&card)["behaviors"][0];
        assert_eq!(behavior["type"], "callback");
        assert_eq!(
            behavior["value"],
            json!({"action": "authorize", "session_id": session().to_string()})
        );
        assert_eq!(session_id_from_action(&behavior["value"]), Some(session()));
        // Only the short explanation and the button by default.
        assert_eq!(elements(&card).len(), 2);
    }

    #[test]
    fn request_card_with_an_authorize_url_opens_it() {
        let url = "https://accounts.feishu.cn/open-apis/authen/v1/authorize?client_id=x";
        let card = auth_request_card(session(), &AuthCardOptions::default(), Some(url));
        let behavior = &button(&card)["behaviors"][0];
        assert_eq!(behavior["type"], "open_url");
        assert_eq!(behavior["default_url"], url);
    }

    #[test]
    fn options_add_their_sections() {
        let options = AuthCardOptions {
            include_detailed_description: true,
            custom_message: Some("Hello from *IT*".into()),
            privacy_policy_url: Some("https://example.com/privacy (v2)".into()),
            ..AuthCardOptions::default()
        };
        let card = auth_request_card(session(), &options, None);
        let els = elements(&card);
        assert_eq!(els.len(), 5);
        assert!(els[1]["content"].as_str().unwrap().contains("encrypted"));
        assert_eq!(els[2]["text"]["tag"], "plain_text");
        assert_eq!(els[2]["text"]["content"], "Hello from *IT*");
        assert_eq!(
            els[4]["content"],
            "[Privacy policy](https://example.com/privacy%20%28v2%29)"
        );
    }

    #[test]
    fn template_ids_send_the_template_form() {
        let options = AuthCardOptions {
            auth_card_template_id: Some("AAqk1234".into()),
            custom_message: Some("hi".into()),
            ..AuthCardOptions::default()
        };
        let card = auth_request_card(session(), &options, None);
        assert_eq!(card["type"], "template");
        assert_eq!(card["data"]["template_id"], "AAqk1234");
        let vars = &card["data"]["template_variable"];
        assert_eq!(vars["session_id"], session().to_string());
        assert_eq!(vars["custom_message"], "hi");
        assert_eq!(vars["authorize_url"], "");
    }

    #[test]
    fn result_cards_are_updatable_and_keep_names_plain() {
        let ok = authorized_card("Ada [x](https://evil)");
        assert_eq!(ok["config"]["update_multi"], true);
        assert_eq!(ok["header"]["template"], "green");
        assert_eq!(elements(&ok)[0]["text"]["tag"], "plain_text");
        assert_eq!(
            elements(&ok)[0]["text"]["content"],
            "Authorized as Ada [x](https://evil)."
        );
        let failed = failure_card("the code expired");
        assert_eq!(failed["config"]["update_multi"], true);
        assert_eq!(failed["header"]["template"], "red");
        assert_eq!(elements(&failed)[0]["text"]["content"], "the code expired");
    }

    #[test]
    fn the_device_code_card_shows_the_code_its_validity_and_opens_the_link() {
        let link = "https://accounts.feishu.cn/verify?user_code=BCDF-0001";
        let card = device_code_card("BCDF-0001", link, Duration::from_secs(240));
        assert_eq!(card["config"]["update_multi"], true);
        let text = card.to_string();
        assert!(
            text.contains("BCDF-0001") && text.contains("4 minutes"),
            "{text}"
        );
        let behavior = &button(&card)["behaviors"][0];
        assert_eq!(behavior["type"], "open_url");
        assert_eq!(behavior["default_url"], link);
    }

    #[test]
    fn the_retry_card_clicks_back_into_the_same_session() {
        let card = retry_card(session(), "The code expired.");
        assert_eq!(card["config"]["update_multi"], true);
        assert_eq!(elements(&card)[0]["text"]["content"], "The code expired.");
        let value = &button(&card)["behaviors"][0]["value"];
        assert_eq!(session_id_from_action(value), Some(session()));
    }

    #[test]
    fn action_values_are_read_from_objects_and_strings_only_if_ours() {
        let id = session().to_string();
        let string_form = Value::String(format!(r#"{{"action":"authorize","session_id":"{id}"}}"#));
        assert_eq!(session_id_from_action(&string_form), Some(session()));
        for other in [
            json!({"action": "approve", "session_id": id}),
            json!({"action": "authorize", "session_id": "not-a-uuid"}),
            json!({"action": "authorize"}),
            json!({"foo": 1}),
            json!("not json"),
            json!(42),
            Value::Null,
        ] {
            assert_eq!(session_id_from_action(&other), None, "{other}");
        }
    }

    #[test]
    fn options_are_validated_and_deserialise_with_defaults() {
        let options: AuthCardOptions = serde_json::from_str(r#"{"custom_message":"hi"}"#).unwrap();
        assert!(!options.include_detailed_description);
        assert!(options.validate().is_ok());
        let bad = AuthCardOptions {
            privacy_policy_url: Some("javascript:alert(1)".into()),
            ..AuthCardOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(CardError::PrivacyPolicyUrl(_))
        ));
        let empty = AuthCardOptions {
            auth_card_template_id: Some(" ".into()),
            ..AuthCardOptions::default()
        };
        assert_eq!(empty.validate(), Err(CardError::EmptyTemplateId));
    }
}
