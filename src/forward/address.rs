//! `SinkAddress`: where a sink delivers, as configured, and how it may be
//! shown.
//!
//! Sink URLs often carry credentials in their userinfo
//! (`https://user:pass@host/…`, `nats://token@host:4222`). The address is
//! kept whole for the client that connects, but its `Debug` and `Display`
//! (and so every log line, error message and settings dump) replace the
//! userinfo with `***`. A NATS address may list several servers separated
//! by commas, as the NATS clients accept; each is masked.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct SinkAddress(String);

impl SinkAddress {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The address itself, credentials included, for the client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// `url` with the userinfo of each comma-separated server replaced by `***`.
fn masked(url: &str) -> String {
    url.split(',')
        .map(|server| {
            let Some((scheme, rest)) = server.split_once("://") else {
                return server.to_owned();
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => server.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for SinkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&masked(&self.0))
    }
}

impl fmt::Debug for SinkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SinkAddress({})", masked(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::SinkAddress;

    #[test]
    fn userinfo_is_masked_wherever_the_address_is_shown() {
        let cases = [
            (
                "https://hook:s3cr3t-pass@events.example.com/in?x=1",
                "https://***@events.example.com/in?x=1",
            ),
            (
                "nats://tok3n@10.0.0.1:4222,nats://u:p4ss@10.0.0.2:4222",
                "nats://***@10.0.0.1:4222,nats://***@10.0.0.2:4222",
            ),
            (
                "http://127.0.0.1:9/events?next=a@b",
                "http://127.0.0.1:9/events?next=a@b",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ];
        for (raw, shown) in cases {
            let address = SinkAddress::new(raw);
            assert_eq!(address.to_string(), shown);
            assert_eq!(format!("{address:?}"), format!("SinkAddress({shown})"));
            assert_eq!(address.expose(), raw);
        }
    }
}
