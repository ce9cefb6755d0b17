//! Event envelopes (§2): what arrives in a WebSocket data frame and, once
//! decrypted, in a webhook body, parsed into one [`Envelope`] whatever the
//! schema.
//!
//! Schema 2.0 carries its metadata in `header`; legacy 1.0 keeps `uuid`,
//! `token`, `ts` at the top and the type in `event.type`. The SDKs tell them
//! apart by a non-empty `schema` or a non-empty `uuid`, and so do we. The
//! `event` body stays raw JSON, because only the router knows which type it
//! wants; the one body this crate needs typed, `card.action.trigger`, gets
//! [`CardAction`], and its reply [`CallbackResponse`].

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Event type of a card button click or form submit.
pub const CARD_ACTION_TRIGGER: &str = "card.action.trigger";

/// What delivery is deduplicated on: `header.event_id` (2.0) or `uuid` (1.0).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// `None` for an empty id, which would make every such event a duplicate.
    pub fn parse(id: &str) -> Option<Self> {
        let id = id.trim();
        (!id.is_empty()).then(|| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which envelope layout the event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Legacy `{"uuid","token","ts","type":"event_callback","event":{"type",..}}`.
    V1,
    /// `{"schema":"2.0","header":{..},"event":{..}}`.
    V2,
}

/// An event, whichever schema it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub schema: Schema,
    pub event_id: EventId,
    /// Dispatch key, e.g. `im.message.receive_v1`.
    pub event_type: String,
    /// The verification token the platform put in; `""` when absent.
    pub token: String,
    /// When the platform created the event, in epoch milliseconds.
    pub create_time_ms: Option<u64>,
    pub app_id: Option<String>,
    pub tenant_key: Option<String>,
    /// The `event` body, untouched.
    pub event: Value,
    /// The envelope exactly as received, for handing on to sinks.
    pub raw: Bytes,
}

/// Why a payload is not an event envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event has neither `schema` nor `uuid`")]
    UnknownSchema,
    #[error("event lacks `{0}`")]
    MissingField(&'static str),
    #[error("event `{0}` is not a card action")]
    NotACardAction(String),
    #[error("card action body is malformed: {0}")]
    BadCardAction(#[source] serde_json::Error),
}

impl Envelope {
    /// Parse a JSON envelope.
    pub fn parse(raw: impl Into<Bytes>) -> Result<Self, EnvelopeError> {
        let raw = raw.into();
        let value = serde_json::from_slice(&raw).map_err(EnvelopeError::NotJson)?;
        Self::from_value(value, raw)
    }

    /// Build from JSON already parsed out of `raw`.
    pub fn from_value(value: Value, raw: Bytes) -> Result<Self, EnvelopeError> {
        let Value::Object(mut top) = value else {
            return Err(EnvelopeError::NotAnObject);
        };
        let event = top.remove("event").unwrap_or(Value::Null);
        if !str_field(&top, "schema").is_empty() {
            Self::v2(&top, event, raw)
        } else if !str_field(&top, "uuid").is_empty() {
            Self::v1(&top, event, raw)
        } else {
            Err(EnvelopeError::UnknownSchema)
        }
    }

    fn v2(top: &Map<String, Value>, event: Value, raw: Bytes) -> Result<Self, EnvelopeError> {
        let header = top
            .get("header")
            .and_then(Value::as_object)
            .ok_or(EnvelopeError::MissingField("header"))?;
        let event_id = EventId::parse(str_field(header, "event_id"))
            .ok_or(EnvelopeError::MissingField("header.event_id"))?;
        let event_type = non_empty(str_field(header, "event_type"))
            .ok_or(EnvelopeError::MissingField("header.event_type"))?;
        Ok(Self {
            schema: Schema::V2,
            event_id,
            event_type,
            token: str_field(header, "token").to_owned(),
            create_time_ms: header.get("create_time").and_then(|v| millis(v, 1.0)),
            app_id: non_empty(str_field(header, "app_id")),
            tenant_key: non_empty(str_field(header, "tenant_key")),
            event,
            raw,
        })
    }

    fn v1(top: &Map<String, Value>, event: Value, raw: Bytes) -> Result<Self, EnvelopeError> {
        let event_id =
            EventId::parse(str_field(top, "uuid")).ok_or(EnvelopeError::MissingField("uuid"))?;
        let body = event.as_object();
        let from_event = |key| body.map(|b| str_field(b, key)).and_then(non_empty);
        let event_type = from_event("type").ok_or(EnvelopeError::MissingField("event.type"))?;
        Ok(Self {
            schema: Schema::V1,
            event_id,
            event_type,
            token: str_field(top, "token").to_owned(),
            // 1.0 `ts` is seconds with a fraction, e.g. "1502199207.7171419".
            create_time_ms: top.get("ts").and_then(|v| millis(v, 1000.0)),
            app_id: from_event("app_id"),
            tenant_key: from_event("tenant_key"),
            event,
            raw,
        })
    }

    /// A callback whose ack must carry a response body (see [`CallbackResponse`]).
    pub fn is_card_action(&self) -> bool {
        self.event_type == CARD_ACTION_TRIGGER
    }

    /// The typed body of a `card.action.trigger`.
    pub fn card_action(&self) -> Result<CardAction, EnvelopeError> {
        if !self.is_card_action() {
            return Err(EnvelopeError::NotACardAction(self.event_type.clone()));
        }
        CardAction::deserialize(&self.event).map_err(EnvelopeError::BadCardAction)
    }
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> &'a str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A timestamp given as a string or number, in units of `unit_ms` milliseconds.
fn millis(v: &Value, unit_ms: f64) -> Option<u64> {
    let n = match v {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    let ms = n * unit_ms;
    // `as` saturates; the range check keeps NaN and negatives out.
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

/// The `event` of a `card.action.trigger` (§2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardAction {
    pub operator: Operator,
    /// Delayed-update credential, valid 30 minutes.
    #[serde(default)]
    pub token: String,
    /// `im_message` or `im_top_notice`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<CardContext>,
}

/// Who clicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub open_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub union_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_key: Option<String>,
}

/// What was clicked or submitted. Only `tag` and `value` are always there;
/// the rest depend on the component.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Whatever JSON the card author put on the component.
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub tag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub option: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_value: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<bool>,
}

/// Where the card was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_chat_id: Option<String>,
}

/// The reply to a card action (§2.3): an optional toast and an optional
/// replacement card. Both absent (`{}`) acknowledges without change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallbackResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toast: Option<Toast>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<CardUpdate>,
}

impl CallbackResponse {
    /// `{}`.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Just a toast.
    pub fn toast(kind: ToastKind, content: impl Into<String>) -> Self {
        Self {
            toast: Some(Toast {
                kind,
                content: content.into(),
                i18n: None,
            }),
            card: None,
        }
    }

    pub fn with_card(mut self, card: CardUpdate) -> Self {
        self.card = Some(card);
        self
    }

    /// The JSON text that goes into an ack's `data` or an HTTP reply body.
    pub fn to_json(&self) -> Vec<u8> {
        // Strings, maps and `Value`s always serialise.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// A small notice shown to the user who clicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toast {
    #[serde(rename = "type")]
    pub kind: ToastKind,
    pub content: String,
    /// Per-locale texts, e.g. `zh_cn`, `en_us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub i18n: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToastKind {
    Info,
    Success,
    Error,
    Warning,
}

/// The card that replaces the clicked one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum CardUpdate {
    /// Full card JSON.
    Raw(Value),
    Template(TemplateCard),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateCard {
    pub template_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variable: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V2: &str = r#"{"schema": "2.0",
 "header": {"event_id": "5e3702a84e847582be8db7fb73283c02", "event_type": "im.message.receive_v1",
            "create_time": "1608725989000", "token": "vtoken", "app_id": "cli_xxx", "tenant_key": "xxx"},
 "event": {"message": {"chat_id": "oc_1"}}}"#;

    const V1: &str = r#"{"uuid": "41b5f371157e3d5341b38b20396e77e3", "token": "vtoken", "ts": "1502199207.7171419",
 "type": "event_callback", "event": {"type": "message", "app_id": "cli_xxx", "tenant_key": "t1"}}"#;

    const CARD: &str = r#"{"schema":"2.0","header":{"event_id":"e1","event_type":"card.action.trigger","create_time":"1","token":"v","app_id":"cli_x","tenant_key":"t"},
 "event":{"operator": {"tenant_key": "t", "user_id": "u1", "open_id": "ou_1", "union_id": "on_1"},
 "token": "c-123", "host": "im_message",
 "action": {"value": {"any": "json"}, "tag": "button", "option": "o", "timezone": "Asia/Shanghai", "name": "n",
            "form_value": {"f": 1}, "input_value": "typed", "options": ["a"], "checked": true},
 "delivery_type": "d",
 "context": {"url": "u", "preview_token": "p", "open_message_id": "om_1", "open_chat_id": "oc_1"}}}"#;

    #[test]
    fn schema_2_envelope() {
        let e = Envelope::parse(V2.as_bytes().to_vec()).unwrap();
        assert_eq!(e.schema, Schema::V2);
        assert_eq!(e.event_id.as_str(), "5e3702a84e847582be8db7fb73283c02");
        assert_eq!(e.event_type, "im.message.receive_v1");
        assert_eq!(e.token, "vtoken");
        assert_eq!(e.create_time_ms, Some(1_608_725_989_000));
        assert_eq!(e.app_id.as_deref(), Some("cli_xxx"));
        assert_eq!(e.tenant_key.as_deref(), Some("xxx"));
        assert_eq!(e.event, json!({"message": {"chat_id": "oc_1"}}));
        assert_eq!(&e.raw[..], V2.as_bytes());
        assert!(!e.is_card_action());
        assert!(matches!(
            e.card_action(),
            Err(EnvelopeError::NotACardAction(_))
        ));
    }

    #[test]
    fn legacy_envelope() {
        let e = Envelope::parse(V1.as_bytes().to_vec()).unwrap();
        assert_eq!(e.schema, Schema::V1);
        assert_eq!(e.event_id.as_str(), "41b5f371157e3d5341b38b20396e77e3");
        assert_eq!(e.event_type, "message");
        assert_eq!(e.token, "vtoken");
        assert_eq!(e.create_time_ms, Some(1_502_199_207_717));
        assert_eq!(e.app_id.as_deref(), Some("cli_xxx"));
        assert_eq!(e.tenant_key.as_deref(), Some("t1"));
    }

    #[test]
    fn broken_envelopes_say_what_is_wrong() {
        let err = |s: &str| Envelope::parse(s.as_bytes().to_vec()).unwrap_err();
        assert!(matches!(err("{"), EnvelopeError::NotJson(_)));
        assert!(matches!(err("[1]"), EnvelopeError::NotAnObject));
        assert!(matches!(
            err(r#"{"schema":"","uuid":""}"#),
            EnvelopeError::UnknownSchema
        ));
        assert!(matches!(
            err(r#"{"schema":"2.0"}"#),
            EnvelopeError::MissingField("header")
        ));
        assert!(matches!(
            err(r#"{"schema":"2.0","header":{"event_type":"x"}}"#),
            EnvelopeError::MissingField("header.event_id")
        ));
        assert!(matches!(
            err(r#"{"schema":"2.0","header":{"event_id":"e"}}"#),
            EnvelopeError::MissingField("header.event_type")
        ));
        assert!(matches!(
            err(r#"{"uuid":"u","event":{}}"#),
            EnvelopeError::MissingField("event.type")
        ));
        // Odd timestamps are dropped, not fatal.
        let e = Envelope::parse(
            br#"{"schema":"2.0","header":{"event_id":"e","event_type":"t","create_time":"soon"}}"#
                .to_vec(),
        )
        .unwrap();
        assert_eq!((e.create_time_ms, e.event.clone()), (None, Value::Null));
    }

    #[test]
    fn card_action_is_typed() {
        let e = Envelope::parse(CARD.as_bytes().to_vec()).unwrap();
        let card = e.card_action().unwrap();
        assert_eq!(card.operator.open_id, "ou_1");
        assert_eq!(card.operator.user_id.as_deref(), Some("u1"));
        assert_eq!(card.operator.union_id.as_deref(), Some("on_1"));
        assert_eq!(card.token, "c-123");
        assert_eq!(card.host.as_deref(), Some("im_message"));
        assert_eq!(card.action.tag, "button");
        assert_eq!(card.action.value, json!({"any": "json"}));
        assert_eq!(card.action.form_value.as_ref().unwrap()["f"], json!(1));
        assert_eq!(card.action.checked, Some(true));
        let ctx = card.context.as_ref().unwrap();
        assert_eq!(ctx.open_message_id.as_deref(), Some("om_1"));
        assert_eq!(ctx.open_chat_id.as_deref(), Some("oc_1"));
        // Serialising gives back the same JSON (the simulator builds clicks this way).
        assert_eq!(serde_json::to_value(&card).unwrap(), e.event);
    }

    #[test]
    fn minimal_card_action_and_missing_operator() {
        let minimal = json!({"schema":"2.0","header":{"event_id":"e","event_type":CARD_ACTION_TRIGGER},
            "event":{"operator":{"open_id":"ou_1"},"action":{"value":"s","tag":"button"}}});
        let e = Envelope::parse(serde_json::to_vec(&minimal).unwrap()).unwrap();
        let card = e.card_action().unwrap();
        assert_eq!(card.action.value, json!("s"));
        assert_eq!(card.context, None);
        let broken = json!({"schema":"2.0","header":{"event_id":"e","event_type":CARD_ACTION_TRIGGER},
            "event":{"action":{"tag":"button"}}});
        let e = Envelope::parse(serde_json::to_vec(&broken).unwrap()).unwrap();
        assert!(matches!(
            e.card_action(),
            Err(EnvelopeError::BadCardAction(_))
        ));
    }

    #[test]
    fn callback_responses_have_the_wire_shape() {
        assert_eq!(CallbackResponse::empty().to_json(), b"{}");
        let toast = CallbackResponse::toast(ToastKind::Success, "Saved");
        assert_eq!(
            serde_json::to_value(&toast).unwrap(),
            json!({"toast": {"type": "success", "content": "Saved"}})
        );
        let mut i18n = BTreeMap::new();
        i18n.insert("zh_cn".to_owned(), "已保存".to_owned());
        i18n.insert("en_us".to_owned(), "Saved".to_owned());
        let full = CallbackResponse {
            toast: Some(Toast {
                kind: ToastKind::Warning,
                content: "Saved".into(),
                i18n: Some(i18n),
            }),
            card: Some(CardUpdate::Raw(json!({"schema": "2.0", "body": {}}))),
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({"toast": {"type": "warning", "content": "Saved", "i18n": {"zh_cn": "已保存", "en_us": "Saved"}},
                   "card": {"type": "raw", "data": {"schema": "2.0", "body": {}}}})
        );
        let template = CallbackResponse::empty().with_card(CardUpdate::Template(TemplateCard {
            template_id: "AAq1".into(),
            template_version_name: Some("1.0.0".into()),
            template_variable: Some(json!({})),
        }));
        assert_eq!(
            serde_json::to_value(&template).unwrap(),
            json!({"card": {"type": "template", "data": {"template_id": "AAq1", "template_version_name": "1.0.0", "template_variable": {}}}})
        );
        let back: CallbackResponse = serde_json::from_slice(&full.to_json()).unwrap();
        assert_eq!(back, full);
    }
}
