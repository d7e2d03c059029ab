//! MQTT topic names: builders and parsers, pure.
//!
//! Owns: the topic tree below and the validation of the ids that go into it
//! (device ids, model ids, client ids) and of reply topics named by apps.
//! Does not own: subscribing or publishing (`transport`), nor what travels on
//! the topics (`wire::frame`, `serve`).
//!
//! ```text
//! moe-edge/{device}/v1/chat/completions         app requests (OpenAI chat JSON)
//! moe-edge/{device}/status                      retained status + last will
//! moe-edge/{device}/experts/reply               replies to this device's expert calls
//! moe-edge/clients/{client}/reply               replies to a plain client (`moe-edge ask`)
//! moe-edge/clients/{user}/{client}/reply        replies to a client logged in as {user}
//! moe-edge/experts/{model}/v1/layer/{l}         remote-expert requests for layer l
//! $share/moe-edge-hosts/moe-edge/experts/{model}/v1/#   what hosts subscribe to
//! ```
//!
//! Expert requests go to one topic **per layer**, not one per model: a host
//! that holds every layer subscribes to the shared `v1/#` filter above, but a
//! deployment can also shard layers across host groups (each group its own
//! `$share/{group}/.../layer/{l}` filters) and a broker ACL can restrict a host
//! to its layers, with no change on the device. It costs nothing on the wire
//! (topic aliases are not needed for a handful of topics) and the layer in the
//! topic is cross-checked against the frame header by the host.

/// The root of every moe-edge topic.
pub const ROOT: &str = "moe-edge";
/// Shared-subscription group that hosts join by default.
pub const HOST_GROUP: &str = "moe-edge-hosts";
/// Longest id (device, model, client) in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest reply topic an app may name in a request body, in bytes.
pub const MAX_REPLY_TOPIC_LEN: usize = 256;

/// A rejected id or topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes, limit {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("{what} contains {ch:?}, which is not allowed")]
    BadChar { what: &'static str, ch: char },
    #[error("reply topic {0:?} would loop back into a request topic")]
    Loop(String),
    #[error(
        "reply topic {0:?} is reserved: inside moe-edge/ only moe-edge/clients/... may be named"
    )]
    Reserved(String),
}

fn validate_id(what: &'static str, id: &str) -> Result<(), TopicError> {
    if id.is_empty() {
        return Err(TopicError::Empty { what });
    }
    if id.len() > MAX_ID_LEN {
        return Err(TopicError::TooLong {
            what,
            len: id.len(),
            limit: MAX_ID_LEN,
        });
    }
    if let Some(ch) = id
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#' | '$' | '\0'))
    {
        return Err(TopicError::BadChar { what, ch });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `id`: 1..=64 bytes, none of `/ + # $` or NUL.
            pub fn new(id: impl Into<String>) -> Result<Self, TopicError> {
                let id = id.into();
                validate_id($what, &id)?;
                Ok($name(id))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = TopicError;
            fn from_str(s: &str) -> Result<Self, TopicError> {
                $name::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = TopicError;
            fn try_from(s: &str) -> Result<Self, TopicError> {
                $name::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// A device id: one topic level under `moe-edge/`.
    DeviceId,
    "device id"
);
id_type!(
    /// A model id: one topic level under `moe-edge/experts/`.
    ModelId,
    "model id"
);
id_type!(
    /// An MQTT client's id as used in its private reply topic.
    ClientId,
    "client id"
);

/// `moe-edge/{device}/v1/chat/completions`: where apps send requests.
pub fn chat_requests(device: &DeviceId) -> String {
    format!("{ROOT}/{device}/v1/chat/completions")
}

/// `moe-edge/+/v1/chat/completions`: every device's requests (for tools).
pub const ALL_CHAT_REQUESTS: &str = "moe-edge/+/v1/chat/completions";

/// `moe-edge/{device}/status`: retained status, also the last-will topic.
pub fn status(device: &DeviceId) -> String {
    format!("{ROOT}/{device}/status")
}

/// `moe-edge/{device}/experts/reply`: the device's response topic for its
/// remote-expert calls.
pub fn expert_reply(device: &DeviceId) -> String {
    format!("{ROOT}/{device}/experts/reply")
}

/// `moe-edge/clients/{client}/reply`: response topic of a plain client.
pub fn client_reply(client: &ClientId) -> String {
    format!("{ROOT}/clients/{client}/reply")
}

/// `moe-edge/clients/{user}/{client}/reply`: response topic of a client
/// logged in to the broker as `user`. The username in the topic is what a
/// broker ACL keys on (Mosquitto: `pattern read moe-edge/clients/%u/#`, see
/// `deploy/mosquitto/acl`), so an app reads only its own replies.
pub fn user_reply(user: &ClientId, client: &ClientId) -> String {
    format!("{ROOT}/clients/{user}/{client}/reply")
}

/// `moe-edge/experts/{model}/v1/layer/{layer}`: where a device sends the
/// remote-expert request for one layer.
pub fn expert_layer(model: &ModelId, layer: u16) -> String {
    format!("{ROOT}/experts/{model}/v1/layer/{layer}")
}

/// `$share/{group}/moe-edge/experts/{model}/v1/#`: what a host serving every
/// layer subscribes to, so N hosts split the load.
pub fn shared_experts_filter(group: &str, model: &ModelId) -> Result<String, TopicError> {
    validate_id("share group", group)?;
    Ok(format!("$share/{group}/{ROOT}/experts/{model}/v1/#"))
}

/// `$share/{group}/moe-edge/experts/{model}/v1/layer/{layer}`: for a host
/// group that serves only some layers.
pub fn shared_expert_layer_filter(
    group: &str,
    model: &ModelId,
    layer: u16,
) -> Result<String, TopicError> {
    validate_id("share group", group)?;
    Ok(format!("$share/{group}/{}", expert_layer(model, layer)))
}

/// Parses `moe-edge/{device}/v1/chat/completions` into the device id.
pub fn parse_chat_requests(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("moe-edge/")?;
    let (device, tail) = rest.split_once('/')?;
    (tail == "v1/chat/completions" && validate_id("device id", device).is_ok()).then_some(device)
}

/// Parses `moe-edge/experts/{model}/v1/layer/{l}` into (model id, layer).
pub fn parse_expert_layer(topic: &str) -> Option<(&str, u16)> {
    let rest = topic.strip_prefix("moe-edge/experts/")?;
    let (model, tail) = rest.split_once('/')?;
    let layer = tail.strip_prefix("v1/layer/")?;
    // u16::from_str accepts a leading '+'; topics never carry one.
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if layer.len() > 1 && layer.starts_with('0') {
        return None;
    }
    validate_id("model id", model).ok()?;
    Some((model, layer.parse().ok()?))
}

/// Checks a reply topic named in a request body by an MQTT 3.1.1 app (or a
/// response topic from an MQTT 5 one): non-empty, ≤ 256 bytes, no wildcards
/// or NUL, not a `$` system topic, not a moe-edge request topic (which
/// would feed the reply back in as a request).
pub fn validate_reply_topic(topic: &str) -> Result<(), TopicError> {
    const WHAT: &str = "reply topic";
    if topic.is_empty() {
        return Err(TopicError::Empty { what: WHAT });
    }
    if topic.len() > MAX_REPLY_TOPIC_LEN {
        return Err(TopicError::TooLong {
            what: WHAT,
            len: topic.len(),
            limit: MAX_REPLY_TOPIC_LEN,
        });
    }
    if topic.starts_with('$') {
        return Err(TopicError::BadChar {
            what: WHAT,
            ch: '$',
        });
    }
    if let Some(ch) = topic.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(TopicError::BadChar { what: WHAT, ch });
    }
    if parse_chat_requests(topic).is_some() || parse_expert_layer(topic).is_some() {
        return Err(TopicError::Loop(topic.to_owned()));
    }
    Ok(())
}

/// [`validate_reply_topic`] for a reply topic named by an *app* (the serve
/// daemon's replies): inside `moe-edge/` only below `moe-edge/clients/`, so
/// an app cannot steer a reply onto a device's status or expert-reply topic.
pub fn validate_app_reply_topic(topic: &str) -> Result<(), TopicError> {
    validate_reply_topic(topic)?;
    if let Some(rest) = topic.strip_prefix("moe-edge/") {
        if !rest.starts_with("clients/") {
            return Err(TopicError::Reserved(topic.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builders() {
        let d = DeviceId::new("car-7").unwrap();
        let m = ModelId::new("assist-moe").unwrap();
        assert_eq!(chat_requests(&d), "moe-edge/car-7/v1/chat/completions");
        assert_eq!(status(&d), "moe-edge/car-7/status");
        assert_eq!(expert_reply(&d), "moe-edge/car-7/experts/reply");
        assert_eq!(
            client_reply(&ClientId::new("ask-1").unwrap()),
            "moe-edge/clients/ask-1/reply"
        );
        assert_eq!(
            user_reply(
                &ClientId::new("app-a").unwrap(),
                &ClientId::new("ask-1").unwrap()
            ),
            "moe-edge/clients/app-a/ask-1/reply"
        );
        assert_eq!(
            expert_layer(&m, 12),
            "moe-edge/experts/assist-moe/v1/layer/12"
        );
        assert_eq!(
            shared_experts_filter(HOST_GROUP, &m).unwrap(),
            "$share/moe-edge-hosts/moe-edge/experts/assist-moe/v1/#"
        );
        assert_eq!(
            shared_expert_layer_filter("g0", &m, 3).unwrap(),
            "$share/g0/moe-edge/experts/assist-moe/v1/layer/3"
        );
        assert!(shared_experts_filter("a/b", &m).is_err());
    }

    #[test]
    fn id_validation() {
        for bad in ["", "a/b", "a+b", "a#", "$SYS", "nul\0", &"x".repeat(65)] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?}");
            assert!(ModelId::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            DeviceId::new("a/b").unwrap_err(),
            TopicError::BadChar {
                what: "device id",
                ch: '/'
            }
        );
        for good in ["x", "car-7", "グラス", &"x".repeat(64), "a.b_c d"] {
            assert!(DeviceId::new(good).is_ok(), "{good:?}");
        }
        // 64 bytes, not 64 chars: 22 three-byte characters are 66 bytes.
        assert!(DeviceId::new("あ".repeat(22)).is_err());
        assert!("car".parse::<ModelId>().is_ok());
    }

    #[test]
    fn parsers() {
        assert_eq!(
            parse_chat_requests("moe-edge/car-7/v1/chat/completions"),
            Some("car-7")
        );
        assert_eq!(parse_chat_requests("moe-edge/car-7/status"), None);
        assert_eq!(
            parse_chat_requests("moe-edge/a/b/v1/chat/completions"),
            None
        );
        assert_eq!(
            parse_expert_layer("moe-edge/experts/m/v1/layer/7"),
            Some(("m", 7))
        );
        for bad in [
            "moe-edge/experts/m/v1/layer/",
            "moe-edge/experts/m/v1/layer/+7",
            "moe-edge/experts/m/v1/layer/07",
            "moe-edge/experts/m/v1/layer/70000",
            "moe-edge/experts/m/v2/layer/7",
            "moe-edge/experts/m/v1/layer/7/x",
        ] {
            assert_eq!(parse_expert_layer(bad), None, "{bad}");
        }
    }

    #[test]
    fn reply_topics() {
        assert!(validate_reply_topic("app/nav/replies/42").is_ok());
        assert!(validate_reply_topic("").is_err());
        assert!(validate_reply_topic("a/+/b").is_err());
        assert!(validate_reply_topic("a/#").is_err());
        assert!(validate_reply_topic("$SYS/x").is_err());
        assert!(validate_reply_topic(&"a".repeat(257)).is_err());
        assert!(matches!(
            validate_reply_topic("moe-edge/car/v1/chat/completions"),
            Err(TopicError::Loop(_))
        ));
        for reserved in [
            "moe-edge/car/status",
            "moe-edge/car/experts/reply",
            "moe-edge/experts/m/v1/other",
        ] {
            assert!(
                matches!(
                    validate_app_reply_topic(reserved),
                    Err(TopicError::Reserved(_))
                ),
                "{reserved}"
            );
        }
        assert!(validate_reply_topic("moe-edge/car/experts/reply").is_ok());
        assert!(validate_app_reply_topic("moe-edge/clients/app-a/ask-1/reply").is_ok());
        assert!(validate_app_reply_topic("moe-edge/clients/ask-1/reply").is_ok());
        assert!(validate_app_reply_topic("app/nav/replies/42").is_ok());
    }

    proptest! {
        #[test]
        fn prop_valid_ids_round_trip(id in "[^/+#$\u{0}]{1,16}", layer: u16) {
            let d = DeviceId::new(id.clone()).unwrap();
            let t = chat_requests(&d);
            prop_assert_eq!(parse_chat_requests(&t), Some(id.as_str()));
            let m = ModelId::new(id.clone()).unwrap();
            let t = expert_layer(&m, layer);
            prop_assert_eq!(parse_expert_layer(&t), Some((id.as_str(), layer)));
        }

        #[test]
        fn prop_ids_with_forbidden_chars_rejected(a in "[a-z]{0,5}", c in "[/+#$\u{0}]", b in "[a-z]{0,5}") {
            let id = format!("{}{}{}", a, c, b);
            prop_assert!(DeviceId::new(id).is_err());
        }
    }
}
