//! Placeholder until the full envelope parser lands.

#[derive(Debug, Clone)]
pub struct Envelope {
    pub event_id: String,
    pub event_type: String,
    pub event: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
#[error("not an event envelope: {0}")]
pub struct EnvelopeError(String);

impl Envelope {
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| EnvelopeError(e.to_string()))?;
        let h = &v["header"];
        Ok(Self {
            event_id: h["event_id"]
                .as_str()
                .ok_or_else(|| EnvelopeError("no event_id".into()))?
                .to_owned(),
            event_type: h["event_type"]
                .as_str()
                .ok_or_else(|| EnvelopeError("no event_type".into()))?
                .to_owned(),
            event: v["event"].clone(),
        })
    }
}
