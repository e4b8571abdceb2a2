//! A complete (non-streaming) answer in OpenAI's shape, as the proxy gets it
//! from an adapter.
//!
//! An OpenAI-compatible upstream already answers in the client's shape, so its
//! body is passed on as the bytes it sent: only its top-level `usage` is
//! parsed, and on the way out the gateway's `cost` is spliced into it. The
//! rest (choices, messages, embedding vectors) is never turned into values
//! and back: it is checked for JSON syntax, not for what a value parser also
//! refuses (nesting deeper than 128, numbers out of `f64`'s range, lone
//! surrogate escapes), and the client's parser sees it exactly as sent.

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;
use std::ops::Range;

use super::error::in_band_error;
use super::{UpstreamError, Usage};

/// A complete answer: a chat completion or an embeddings list.
#[derive(Debug)]
pub enum Completion {
    /// Built by an adapter that translated the provider's own shape.
    Translated(Value),
    /// An OpenAI-compatible upstream's JSON object, as it sent it.
    Upstream(UpstreamJson),
}

impl Completion {
    /// The token counts the answer reports, if it reports any.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Self::Translated(value) => value.get("usage").and_then(Usage::from_openai),
            Self::Upstream(json) => json.usage.as_ref().and_then(Usage::from_openai),
        }
    }

    /// The characters its choices generated (text and tool call arguments),
    /// for a local count when it reports no usage.
    pub fn generated_chars(&self) -> usize {
        let parsed: Value;
        let value = match self {
            Self::Translated(value) => value,
            // Parsed whole only here: an upstream that omits usage is rare.
            Self::Upstream(json) => {
                parsed = serde_json::from_slice(&json.bytes).unwrap_or_default();
                &parsed
            }
        };
        value
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|choice| choice.get("message"))
            .map(super::generated_chars)
            .sum()
    }

    /// The answer as a JSON value, for a door that translates it.
    pub fn into_value(self) -> Value {
        match self {
            Self::Translated(value) => value,
            Self::Upstream(json) => serde_json::from_slice(&json.bytes).unwrap_or_default(),
        }
    }

    /// The body for the client, with `cost` (in USD) added to its `usage`
    /// object when it has one.
    pub fn into_body(self, cost_usd: f64) -> Bytes {
        match self {
            Self::Translated(mut value) => {
                if let Some(usage) = value.get_mut("usage").and_then(Value::as_object_mut) {
                    usage.insert("cost".into(), cost_usd.into());
                }
                Bytes::from(value.to_string())
            }
            Self::Upstream(json) => json.with_cost(cost_usd),
        }
    }
}

/// An upstream's JSON object, checked whole, with its top-level `usage`
/// parsed and located.
#[derive(Debug)]
pub struct UpstreamJson {
    bytes: Bytes,
    /// The top-level `usage` and where its text lies in `bytes`.
    usage: Option<Value>,
    usage_at: Range<usize>,
}

impl UpstreamJson {
    /// Checks that `bytes` is one JSON object and finds its `usage`. A body
    /// that repeats `usage` is refused: parsers differ on which one counts,
    /// and the client must see the one it is billed for. A body with an
    /// `error` is the upstream's failure, whatever its status said.
    pub fn parse(bytes: Bytes) -> Result<Self, UpstreamError> {
        let bad = |e: serde_json::Error| UpstreamError::Protocol(e.to_string());
        // Checked as a whole first: the values skipped below are not.
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| UpstreamError::Protocol(format!("the body is not UTF-8: {e}")))?;
        if text.trim_start().is_empty() {
            return Err(UpstreamError::Truncated);
        }
        // Said here, so that the error never quotes the body (serde would).
        if !text.trim_start().starts_with('{') {
            return Err(UpstreamError::Protocol(
                "the body is not a JSON object".into(),
            ));
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let top = deserializer.deserialize_map(TopLevelFinder).map_err(bad)?;
        deserializer.end().map_err(bad)?;
        if top.error {
            return Err(in_band_error(&serde_json::from_str(text).map_err(bad)?));
        }
        let Some(usage_text) = top.usage else {
            return Ok(Self {
                usage: None,
                usage_at: 0..0,
                bytes,
            });
        };
        // The raw value borrows from `text`, which is `bytes`: its offset there.
        let start = (usage_text.as_ptr() as usize) - (text.as_ptr() as usize);
        let usage_at = start..start + usage_text.len();
        debug_assert_eq!(text.get(usage_at.clone()), Some(usage_text));
        let usage = serde_json::from_str(usage_text).map_err(bad)?;
        Ok(Self {
            usage: Some(usage),
            usage_at,
            bytes,
        })
    }

    /// The bytes with `cost` added to the usage object; unchanged when there
    /// is no usage object. The field goes in before the object's closing
    /// brace, unless the upstream sent a `cost` of its own (OpenRouter
    /// does): then the object is written anew, with the gateway's.
    fn with_cost(self, cost_usd: f64) -> Bytes {
        let Some(Value::Object(mut usage)) = self.usage else {
            return self.bytes;
        };
        let cost = Value::from(cost_usd);
        let (replaced, insert_at) = if usage.contains_key("cost") {
            usage.insert("cost".into(), cost);
            (Value::Object(usage).to_string(), self.usage_at.clone())
        } else {
            // The raw text of an object ends with its closing brace.
            let close = self.usage_at.end - 1;
            debug_assert_eq!(self.bytes[close], b'}');
            let comma = if usage.is_empty() { "" } else { "," };
            (format!("{comma}\"cost\":{cost}"), close..close)
        };
        let mut out = Vec::with_capacity(self.bytes.len() + replaced.len());
        out.extend_from_slice(&self.bytes[..insert_at.start]);
        out.extend_from_slice(replaced.as_bytes());
        out.extend_from_slice(&self.bytes[insert_at.end..]);
        Bytes::from(out)
    }
}

/// What the gateway reads at the top level of an upstream's object.
#[derive(Default)]
struct TopLevel<'de> {
    /// The text of `usage`.
    usage: Option<&'de str>,
    /// Whether it has a non-null `error`.
    error: bool,
}

/// Visits the top level of an object: every value is skipped over (checked
/// but not built) except `usage`, whose text it keeps, and `error`.
struct TopLevelFinder;

impl<'de> Visitor<'de> for TopLevelFinder {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top = TopLevel::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Usage if top.usage.is_some() => {
                    return Err(de::Error::duplicate_field("usage"))
                }
                Key::Usage => top.usage = Some(map.next_value::<&'de RawValue>()?.get()),
                Key::Error => top.error |= map.next_value::<&'de RawValue>()?.get() != "null",
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

/// The top-level keys the gateway reads.
enum Key {
    Usage,
    Error,
    Other,
}

/// A key, read only to tell which [`Key`] it is (no allocation unless the
/// key has escapes).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "usage" => Key::Usage,
            "error" => Key::Error,
            _ => Key::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn upstream(text: &str) -> Completion {
        Completion::Upstream(UpstreamJson::parse(Bytes::from(text.to_owned())).unwrap())
    }

    fn body_json(completion: Completion, cost: f64) -> Value {
        serde_json::from_slice(&completion.into_body(cost)).unwrap()
    }

    #[test]
    fn upstream_usage_is_read_and_cost_spliced_in() {
        let text = r#"{"id":"c1","choices":[{"index":0,"message":{"role":"assistant","content":"hi \"there\""}}],
            "usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,
                     "prompt_tokens_details":{"cached_tokens":4}},"system_fingerprint":"fp"}"#;
        let completion = upstream(text);
        assert_eq!(
            completion.usage(),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 5,
                cached_tokens: 4,
                ..Usage::default()
            })
        );
        let body = body_json(completion, 0.25);
        assert_eq!(body["usage"]["cost"], 0.25);
        assert_eq!(body["usage"]["total_tokens"], 17);
        let mut expected: Value = serde_json::from_str(text).unwrap();
        expected["usage"]["cost"] = json!(0.25);
        assert_eq!(body, expected, "everything else passes unchanged");
    }

    #[test]
    fn everything_but_usage_keeps_its_bytes() {
        let text =
            "{ \"z\" : [1.50, 2e3],\n \"usage\": {\"prompt_tokens\": 1}, \"a\": \"\\u00e9\" }";
        let out = upstream(text).into_body(1.0);
        let out = std::str::from_utf8(&out).unwrap();
        assert!(
            out.starts_with("{ \"z\" : [1.50, 2e3],\n \"usage\": {"),
            "{out}"
        );
        assert!(out.ends_with("}, \"a\": \"\\u00e9\" }"), "{out}");
    }

    #[test]
    fn usage_as_the_last_key_is_spliced_too() {
        let out = upstream(r#"{"id":"x","usage":{"prompt_tokens":2}}"#).into_body(0.5);
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"id": "x", "usage": {"prompt_tokens": 2, "cost": 0.5}})
        );
    }

    #[test]
    fn cost_goes_in_before_the_closing_brace() {
        for (text, expected) in [
            (
                r#"{"usage":{"prompt_tokens":2 ,"x":[1] } }"#,
                r#"{"usage":{"prompt_tokens":2 ,"x":[1] ,"cost":0.5} }"#,
            ),
            (r#"{"usage":{ }}"#, r#"{"usage":{ "cost":0.5}}"#),
        ] {
            let out = upstream(text).into_body(0.5);
            assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        }
    }

    #[test]
    fn an_upstreams_own_cost_is_replaced_not_repeated() {
        for text in [
            r#"{"id":"x","usage":{"cost":9.5,"prompt_tokens":2}}"#,
            r#"{"id":"x","usage":{"prompt_tokens":2,"co\u0073t":9.5}}"#,
        ] {
            let out = upstream(text).into_body(0.5);
            let out = std::str::from_utf8(&out).unwrap();
            assert_eq!(out.matches("cost").count(), 1, "{out}");
            assert_eq!(
                serde_json::from_str::<Value>(out).unwrap(),
                json!({"id": "x", "usage": {"prompt_tokens": 2, "cost": 0.5}})
            );
        }
    }

    #[test]
    fn a_repeated_usage_key_is_a_protocol_error() {
        let result = UpstreamJson::parse(Bytes::from_static(
            br#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
        ));
        assert!(
            matches!(result, Err(UpstreamError::Protocol(_))),
            "{result:?}"
        );
    }

    #[test]
    fn a_body_without_a_usage_object_passes_unchanged() {
        for text in [
            r#"{"id":"x","choices":[]}"#,
            r#"{"usage":null}"#,
            r#"{"usage":5}"#,
            "{}",
        ] {
            let completion = upstream(text);
            assert_eq!(completion.usage(), None, "{text}");
            assert_eq!(completion.into_body(1.0), Bytes::from(text), "{text}");
        }
    }

    #[test]
    fn keys_with_escapes_are_matched() {
        let completion = upstream(r#"{"us\u0061ge":{"prompt_tokens":3}}"#);
        assert_eq!(completion.usage().map(|u| u.prompt_tokens), Some(3));
    }

    #[test]
    fn the_error_for_a_non_object_never_quotes_the_body() {
        let result = UpstreamJson::parse(Bytes::from_static(b" \"sk-secret\""));
        let Err(UpstreamError::Protocol(message)) = result else {
            panic!("{result:?}");
        };
        assert!(!message.contains("sk-secret"), "{message}");
    }

    #[test]
    fn anything_but_one_json_object_is_a_protocol_error() {
        for text in [
            "{not json",
            "[1,2]",
            "\"text\"",
            r#"{"a":1} {"b":2}"#,
            r#"{"a":1,"usage":{"prompt_tokens":1}"#,
            r#"{"a":[1,}"#,
        ] {
            let result = UpstreamJson::parse(Bytes::from(text));
            assert!(
                matches!(result, Err(UpstreamError::Protocol(_))),
                "{text}: {result:?}"
            );
        }
    }

    #[test]
    fn an_empty_body_is_an_answer_cut_short() {
        for text in ["", " \n"] {
            let result = UpstreamJson::parse(Bytes::from(text));
            assert!(
                matches!(result, Err(UpstreamError::Truncated)),
                "{text:?}: {result:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_anywhere_is_a_protocol_error() {
        let result = UpstreamJson::parse(Bytes::from_static(b"{\"a\":\"\xff\"}"));
        assert!(
            matches!(result, Err(UpstreamError::Protocol(_))),
            "{result:?}"
        );
    }

    #[test]
    fn an_error_in_a_success_body_is_the_upstreams_failure() {
        let result = UpstreamJson::parse(Bytes::from_static(
            br#"{"id":"x","error":{"message":"Rate limited upstream","code":429}}"#,
        ));
        let Err(UpstreamError::Status {
            status, message, ..
        }) = result
        else {
            panic!("{result:?}");
        };
        assert_eq!((status, message.as_str()), (429, "Rate limited upstream"));
        let result = UpstreamJson::parse(Bytes::from_static(
            br#"{"error":{"message":"overloaded","code":"server_error"}}"#,
        ));
        assert!(
            matches!(result, Err(UpstreamError::Status { status: 502, .. })),
            "a code that is no status is a 502: {result:?}"
        );
        assert!(upstream(r#"{"id":"x","error":null}"#).usage().is_none());
    }

    #[test]
    fn generated_characters_are_counted_from_every_choice() {
        let text = r#"{"choices":[{"message":{"content":"héllo"}},
            {"message":{"content":null,"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]}}]}"#;
        assert_eq!(upstream(text).generated_chars(), 5 + 7);
        let translated =
            Completion::Translated(json!({"choices": [{"message": {"content": "abc"}}]}));
        assert_eq!(translated.generated_chars(), 3);
        assert_eq!(upstream(r#"{"data":[]}"#).generated_chars(), 0);
    }

    #[test]
    fn translated_answers_get_the_cost_too() {
        let completion = Completion::Translated(json!({
            "id": "t", "usage": {"prompt_tokens": 3, "completion_tokens": 2}
        }));
        assert_eq!(completion.usage().map(|u| u.completion_tokens), Some(2));
        assert_eq!(body_json(completion, 0.5)["usage"]["cost"], 0.5);
        let without = Completion::Translated(json!({"id": "t"}));
        assert_eq!(body_json(without, 0.5), json!({"id": "t"}));
    }
}
